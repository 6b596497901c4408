"""Every error is JSON ``{"error": {"code", "message"}}`` — never Werkzeug's HTML page."""
from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from common.enqueue import BrokerUnavailable

logger = logging.getLogger(__name__)

#: Stable machine-readable codes for the HTTP errors Flask/Werkzeug (and gunicorn, before the
#: app: web/server.py) raise themselves.
HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "payload_too_large", 414: "uri_too_long", 415: "unsupported_media_type",
    417: "expectation_failed", 422: "unprocessable_entity", 429: "too_many_requests",
    431: "request_header_fields_too_large", 500: "internal_error", 501: "not_implemented",
    503: "service_unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(BrokerUnavailable)
    def _broker_down(exc: BrokerUnavailable) -> Response:
        logger.warning("broker unavailable: %s", exc)
        return error_response(503, "broker_unavailable", "The task queue is unavailable; retry shortly.", {"Retry-After": "5"})

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_down(exc: DBAPIError) -> Response:
        # Unreachable, restarting, or (SQLite) locked past its busy timeout: the client retries.
        logger.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
        return error_response(503, "database_unavailable", "The database is unavailable; retry shortly.",
                              {"Retry-After": "5"})

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {}
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return error_response(status, HTTP_CODES.get(status, "http_error"), exc.description or exc.name, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side.")
