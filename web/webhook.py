"""``POST /api/v1/cloudinary?token=...``: Cloudinary's notification for every upload.

This is the product's hottest path: it verifies and enqueues, nothing more — no database
write, no Cloudinary call. The worker does the rest."""
from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, current_app, request

from common import cloudinary_client, tokens
from common.config import Settings
from common.enqueue import publish_fast
from web.body import json_object, read_body
from web.errors import ApiError
from web.headers import JSON_CONTENT_TYPE

bp = Blueprint("webhook", __name__, url_prefix="/api/v1")
logger = logging.getLogger(__name__)

#: What each notification type becomes; anything else is acknowledged and logged.
_TASK_FOR = {"upload": "album.ingest", "delete": "album.remove_deleted", "eager": "album.record_eager"}
#: The answer, built once: ``jsonify`` would serialise the same dict on every request.
_ACCEPTED = b'{"status":"accepted"}'


def _accepted() -> Response:
    return current_app.response_class(_ACCEPTED, content_type=JSON_CONTENT_TYPE)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Cloudinary realm="notifications"'})


def _check_signature(settings: Settings, raw: bytes) -> None:
    timestamp = request.headers.get("X-Cld-Timestamp", "")
    signature = request.headers.get("X-Cld-Signature", "")
    # ASCII digits, at most 12: "²" passes isdigit() but not int(), a huge one overflows float.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12 or not signature:
        raise _unauthorized("Missing or malformed X-Cld-Timestamp / X-Cld-Signature.")
    age = time.time() - int(timestamp)
    if age > settings.webhook_max_age or age < -settings.webhook_max_skew:
        raise _unauthorized("X-Cld-Timestamp is outside the accepted window.")
    algorithm = current_app.config["CLOUDINARY_SIGNATURE_ALGORITHM"]
    if not cloudinary_client.notification_signature_valid(raw, timestamp, signature, cloudinary_client.api_secret(), algorithm):
        raise _unauthorized("Invalid Cloudinary signature.")


@bp.post("/cloudinary")
def notification() -> Response:
    settings: Settings = current_app.config["SETTINGS"]
    raw = read_body()  # 413 past 1 MiB, chunked too: never a truncated body checked as forged
    _check_signature(settings, raw)
    try:
        claims = tokens.decode_notification(request.args.get("token", ""), settings.jwt_secret, settings.upload_form_ttl)
    except tokens.TokenError as exc:
        raise _unauthorized(str(exc)) from None
    payload = json_object(raw)

    album_id = claims["album_id"]
    kind = payload.get("notification_type")
    if kind == "upload":
        tags = payload.get("tags")
        if not isinstance(tags, list) or album_id not in tags:
            raise ApiError(403, "album_mismatch", "The upload is not tagged with the token's album.")
    name = _TASK_FOR.get(kind) if isinstance(kind, str) else None
    if name is None:
        logger.info("ignored notification type %r for album %s", kind, album_id)
        return _accepted()
    # Delete and eager notifications carry no tags: their tasks act only on images of this album.
    # A short argsrepr: Flower shows it, and Celery would otherwise repr the whole payload.
    user_id = claims.get("user_id")
    publish_fast(name, (album_id, payload, user_id), f"({album_id!r}, <{kind} {payload.get('public_id')!r}>, {user_id!r})")
    return _accepted()
