"""The albums API: ``upload_done``, the album, its images, status, duplicates, and management."""
from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from common import cloudinary_client, db
from common.config import Settings
from common.enqueue import request_reconcile, request_recount
from common.models import Album
from common.serializers import album_json
from web.auth import album_access
from web.errors import ApiError

bp = Blueprint("albums", __name__, url_prefix="/api/v1/albums")


def _settings() -> Settings:
    return current_app.config["SETTINGS"]


def load_album(album_id: str) -> Album:
    with db.session_scope() as session:
        album = session.get(Album, album_id)
        if album is None:
            raise ApiError(404, "album_not_found", "No such album.")
        return album


def _form_for(album: Album) -> dict[str, Any] | None:
    if "image_upload" not in g.abilities:
        return None
    return cloudinary_client.upload_form(
        album_id=album.id,
        organization_id=album.organization_id,
        user_id=str(g.claims.get("user_id", "")),
        settings=_settings(),
        now=int(time.time()),
    )


def _require_empty_or_form_body() -> None:
    """The seed posts an empty form body; anything else that is not a form or JSON is refused."""
    if request.content_length and request.mimetype not in ("application/x-www-form-urlencoded", "application/json", "multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "Send an empty body (application/x-www-form-urlencoded).")


@bp.get("/<album_id>")
@album_access()
def show(album_id: str) -> Response:
    album = load_album(album_id)
    return jsonify(album_json(album, _form_for(album)))


@bp.post("/<album_id>/upload_done")
@album_access("image_upload")
def upload_done(album_id: str) -> Response:
    """A client finished a batch: recount the album, look for photos whose webhook never came,
    and hand back a fresh upload form. Answers at once; the work runs on the workers."""
    _require_empty_or_form_body()
    album = load_album(album_id)
    body = album_json(album, _form_for(album))
    request_recount(album_id)
    request_reconcile(album_id)
    return jsonify(body)
