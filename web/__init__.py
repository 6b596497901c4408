"""The Flask application: a thin API that answers at once and hands slow work to Celery."""
from __future__ import annotations

from flask import Flask, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge

from common import cloudinary_client, db
from common.config import Settings, get_settings
from common.logs import setup_logging
from web import body
from web.json import SeedJSONProvider


class AlbumFlask(Flask):
    json_provider_class = SeedJSONProvider


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app. ``settings`` defaults to the environment's (``common.config``)."""
    settings = settings or get_settings()
    settings.check()
    app = AlbumFlask(__name__)
    app.config["SETTINGS"] = settings
    # Requests are small JSON or empty; a larger body is refused with 413 before it is read
    # (and a chunked one as soon as it passes the limit: web/body.py).
    app.config["MAX_CONTENT_LENGTH"] = body.MAX_BODY

    setup_logging()
    db.ensure(settings.database_url)
    cloudinary_client.ensure_configured(settings)
    app.config["CLOUDINARY_SIGNATURE_ALGORITHM"] = cloudinary_client.signature_algorithm()

    from web import albums, cli, errors, headers, health, openapi, upload_test, webhook

    headers.install(app)

    @app.before_request
    def _refuse_large_bodies() -> None:
        # Flask enforces MAX_CONTENT_LENGTH only when a view reads the body; refuse it up front.
        if (request.content_length or 0) > app.config["MAX_CONTENT_LENGTH"]:
            raise RequestEntityTooLarge()

    errors.register_error_handlers(app)
    app.register_blueprint(albums.bp)
    app.register_blueprint(webhook.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(upload_test.bp)
    app.register_blueprint(openapi.bp)  # the API contract and its reference page
    openapi.install_response_validation(app)  # only when OPENAPI_VALIDATE_RESPONSES=1 (tests)
    fast_path = webhook.install_fast_path(app)  # a valid notification is answered before Flask
    if app.config["OPENAPI_VALIDATE_RESPONSES"]:
        fast_path.check_response = lambda headers, data: openapi.check_and_record(
            webhook.PATH, "POST", 200, Headers(headers), data, webhook.PATH)
    cli.register(app)
    return app
