"""Cloudinary-shaped errors: every failure answers ``{"error": {"message": "..."}}``."""
from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger(__name__)


class CloudinaryError(Exception):
    """An error answer with Cloudinary's status and message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"message": message}})
    response.status_code = status
    # Cloudinary's CDN reports delivery errors in this header; harmless on the API too.
    response.headers["X-Cld-Error"] = message[:200].encode("ascii", "replace").decode("ascii")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register_error_handlers(app: Flask, max_file_size: int) -> None:
    """Map every exception to the Cloudinary error shape; only real bugs answer 500."""

    @app.errorhandler(CloudinaryError)
    def _cloudinary_error(exc: CloudinaryError) -> Response:
        return error_response(exc.status, exc.message, exc.headers)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> Response:
        # Cloudinary answers an oversized file with 400 and the sizes.
        got = request.content_length or 0
        return error_response(400, f"File size too large. Got {got}. Maximum is {max_file_size}.")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 400
        if status == 405:
            # An unknown route to Cloudinary is a 404 whatever the method; the SDK maps it to
            # NotFound, where a 405 would surface as a bare Exception.
            status = 404
        messages = {400: "Bad request", 404: "Resource not found"}
        return error_response(status, messages.get(status, exc.name))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Logged loudly: a 500 here is a bug to fix, not an answer to rely on.
        log.exception("unexpected error")
        return error_response(500, "General Error")
