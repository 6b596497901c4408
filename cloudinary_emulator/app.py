"""The emulator's Flask app: one blueprint per API surface, CORS and request ids around them.

| module | surface |
| --- | --- |
| ``upload_api`` | Upload API (upload, explicit, destroy) |
| ``admin_api`` | Admin API (resources, listings, deletion; Basic auth and the call budget) |
| ``delivery`` | delivery URLs (originals and transformations) |
| ``notifications`` | outgoing webhooks (sent by the Upload API and eager renders) |
| ``controls`` | ``/_emulator`` health, faults, stats, reset |

Shared helpers sit beside them: ``state`` (what requests share), ``params`` (request reading and
validation), ``resources`` (the asset's answer shape), ``derived`` (renders and eager),
``signing`` and ``errors``.
"""
from __future__ import annotations

import uuid

from flask import Flask, Response, g, request

from cloudinary_emulator.admin_api import admin_api
from cloudinary_emulator.controls import controls
from cloudinary_emulator.delivery import delivery
from cloudinary_emulator.errors import register_error_handlers
from cloudinary_emulator.settings import Settings
from cloudinary_emulator.state import EXTENSION_KEY, EmulatorState
from cloudinary_emulator.upload_api import upload_api

CORS_HEADERS = "Content-Type, Content-Range, Content-Disposition, X-Requested-With, X-Unique-Upload-Id"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the emulator app around one EmulatorState (storage, faults, stats, workers)."""
    settings = settings or Settings()
    app = Flask(__name__)
    # Room for a data URI (base64 is 4/3 of the file) plus the other form fields.
    body_limit = settings.max_file_size * 4 // 3 + 1024 * 1024
    app.config.update(MAX_CONTENT_LENGTH=body_limit, MAX_FORM_MEMORY_SIZE=body_limit)
    # Keep Cloudinary's key order in answers (asset_id, public_id, version, ...).
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = EmulatorState(settings)
    register_error_handlers(app, settings.max_file_size)

    @app.before_request
    def _request_id() -> None:
        g.request_id = uuid.uuid4().hex

    @app.after_request
    def _common_headers(response: Response) -> Response:
        response.headers.setdefault("X-Request-Id", g.get("request_id", uuid.uuid4().hex))
        if request.path.startswith("/v1_1/"):
            # Browsers upload straight to the Upload API from other origins (signed forms).
            response.headers["Access-Control-Allow-Origin"] = "*"
            response.headers["Access-Control-Expose-Headers"] = (
                "X-Request-Id, X-FeatureRateLimit-Limit, X-FeatureRateLimit-Remaining,"
                " X-FeatureRateLimit-Reset")
        return response

    @app.before_request
    def _preflight() -> Response | None:
        # Answered before routing: Flask's automatic OPTIONS would omit the CORS headers.
        if request.method != "OPTIONS" or not request.path.startswith("/v1_1/"):
            return None
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = (
            request.headers.get("Access-Control-Request-Headers") or CORS_HEADERS)
        response.headers["Access-Control-Max-Age"] = "86400"
        return response

    for blueprint in (upload_api, admin_api, delivery, controls):
        app.register_blueprint(blueprint)
    return app


__all__ = ["create_app", "EmulatorState"]
