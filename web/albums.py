"""The albums API: ``upload_done``, the album, its images, status, duplicates, and management."""
from __future__ import annotations

import base64
import re
import time
from typing import Any

import logging

from flask import Blueprint, Response, current_app, g, jsonify, request

from sqlalchemy import select

from common import changes as album_changes
from common import cloudinary_client, db, pipeline, views
from common import duplicates as duplicate_index
from common.config import Settings
from common.enqueue import BrokerUnavailable, request_reconcile, request_recount, send, send_reprocess, task
from common.logs import log
from common.models import Album, Image, utcnow
from common.serializers import album_json, image_json, iso
from web.auth import album_access
from web.body import json_object, read_body
from web.errors import ApiError

bp = Blueprint("albums", __name__, url_prefix="/api/v1/albums")
logger = logging.getLogger(__name__)


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
    """The seed posts an empty form body; anything else that is not a form or JSON is refused.
    A chunked body has no Content-Length but is a body all the same."""
    has_body = bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if has_body and request.mimetype not in ("application/x-www-form-urlencoded", "application/json", "multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "Send an empty body (application/x-www-form-urlencoded).")


def _publish_after_commit(what: str, publish: Any) -> bool:
    """The change is committed, and with it the work it implies: the heal task carries that out
    if the broker cannot take it now, so a broker outage does not fail the request. False when
    the broker did not take it."""
    try:
        publish()
    except BrokerUnavailable as exc:
        log(logger, logging.WARNING, "broker unavailable; heal will send it", what=what, error=str(exc))
        return False
    return True


def _pending_views(album_id: str, viewer: str | None = None) -> int:
    """Count ``viewer``'s view (if any) and answer the album's views not yet in the database, in
    one Redis round trip. Best effort: with Redis down the view is lost, the answer is not."""
    settings = _settings()
    if not settings.count_views:
        return 0
    return views.breaker.call(
        lambda: views.read_album(views.read_connections, album_id, viewer, settings.view_window).pending, 0)


@bp.get("/<album_id>")
@album_access()
def show(album_id: str) -> Response:
    """The album. A ``GET`` by a reader that is not an uploader is a view (``common/views.py``)."""
    album = load_album(album_id)
    form = _form_for(album)
    if form is not None and pipeline.form_issued(album):
        # Albums whose forms went out are reconciled now and then (lost webhooks): noted at most
        # once a minute, so reading an album does not become a write each time.
        with db.session_scope() as session:
            stored = session.get(Album, album_id)
            if stored is not None:
                stored.form_issued_at = album.form_issued_at
    viewer = views.viewer(g.claims, g.abilities) if request.method == "GET" else None
    return jsonify(album_json(album, form, _pending_views(album_id, viewer)))


@bp.post("/<album_id>/upload_done")
@album_access("image_upload")
def upload_done(album_id: str) -> Response:
    """A client finished a batch: recount the album, look for photos whose webhook never came,
    and hand back a fresh upload form. Answers at once; the work runs on the workers. The
    reconcile it asks for is recorded with the album first, so it happens even if the broker
    is down right now."""
    _require_empty_or_form_body()
    videos = request.args.get("videos")
    if videos not in (None, "0", "1"):
        raise ApiError(400, "invalid_parameter", "'videos' must be 0 or 1.")
    with db.session_scope() as session:
        album = session.get(Album, album_id)
        if album is None:
            raise ApiError(404, "album_not_found", "No such album.")
        form = _form_for(album)
        album.form_issued_at = utcnow()
        album.reconcile_requested_at = utcnow()
        if videos == "1":
            # The batch had videos: reconciles list the album's videos too, even if every
            # video's webhook was lost (an album that never had one is not listed for them).
            album.expects_videos = True

    def publish() -> None:
        request_recount(album_id)
        request_reconcile(album_id)

    published = _publish_after_commit("upload_done", publish)
    # An uploader's call counts no view. If Redis just failed the publish, the pending views are
    # not waited for a second time: the answer has the database's count.
    return jsonify(album_json(album, form, _pending_views(album_id) if published else 0))


#: A cursor is an image id (1 to 18 ASCII digits) in unpadded URL-safe base64: opaque to
#: clients, and exactly this language (web/openapi.yaml says the same, character for character,
#: so that a generated "valid" cursor is one the server takes). Base64 maps three digits to
#: ``[MNO]`` + one of 4 + one of 10 + one of 10 characters; a last one or two digits to 2 or 3.
_DIGITS3 = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]"
_DIGITS1 = "(?:[MN][AQgw]|O[AQ])"
_DIGITS2 = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk]"
CURSOR_PATTERN = f"^(?:{_DIGITS3}){{0,5}}(?:{_DIGITS3}|{_DIGITS1}|{_DIGITS2})$"
_CURSOR = re.compile(CURSOR_PATTERN)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # isascii(): str.isdigit() also accepts digits like "²" that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_parameter", f"'{name}' must be a whole number from {low} to {high}.")
    return int(raw)


def _decode_cursor(raw: str | None, name: str = "cursor") -> int:
    if raw is None:
        return 0
    if not _CURSOR.fullmatch(raw):
        raise ApiError(400, "invalid_parameter", f"'{name}' is not a cursor this API returned.")
    return int(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


@bp.get("/<album_id>/images")
@album_access()
def images(album_id: str) -> Response:
    """The album's images, oldest first, ``limit`` per page, ``next_cursor`` while more remain."""
    limit = _int_arg("limit", 50, 1, 200)
    after = _decode_cursor(request.args.get("cursor"))
    load_album(album_id)
    with db.session_scope() as session:
        rows = session.scalars(
            select(Image)
            .where(Image.album_id == album_id, Image.deleted_at.is_(None), Image.id > after)
            .order_by(Image.id)
            .limit(limit + 1)
        ).all()
        page = [image_json(img) for img in rows[:limit]]
    next_cursor = _encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return jsonify({"images": page, "next_cursor": next_cursor})


@bp.get("/<album_id>/changes")
@album_access()
def changes(album_id: str) -> Response:
    """What changed after ``since`` (a previous answer's ``cursor``): images new or updated, as
    ``/images`` shows them, and the ids of deleted ones, at most ``limit``; ``more`` while more
    remain. Without ``since``: no changes, only the current ``cursor``."""
    limit = _int_arg("limit", 200, 1, 200)
    raw = request.args.get("since")
    since = _decode_cursor(raw, "since") if raw is not None else None
    load_album(album_id)
    with db.session_scope() as session:
        found = album_changes.changes_since(session, album_id, since, limit)
        images = [image_json(img) for img in found.images]
    return jsonify({"images": images, "deleted": found.deleted, "cursor": _encode_cursor(found.cursor),
                    "more": found.more})


@bp.get("/<album_id>/status")
@album_access()
def status(album_id: str) -> Response:
    album = load_album(album_id)
    with db.session_scope() as session:
        counts = pipeline.status_counts(session, album_id)
    return jsonify({
        "album_id": album.id,
        "images_count": album.images_count,
        "counts": counts,
        "last_reconciled_at": iso(album.last_reconciled_at),
    })


@bp.get("/<album_id>/duplicates")
@album_access()
def duplicates(album_id: str) -> Response:
    """Near-duplicates: images whose pHashes differ by at most ``threshold`` bits (0 to
    ``duplicate_index.MAX_THRESHOLD``), from the index the workers keep; ``limit`` groups a page,
    in the order of their smallest image id, ``next_cursor`` while more remain."""
    threshold = _int_arg("threshold", _settings().duplicate_threshold, 0, duplicate_index.MAX_THRESHOLD)
    limit = _int_arg("limit", 50, 1, 200)
    after = _decode_cursor(request.args.get("cursor"))
    load_album(album_id)
    with db.session_scope() as session:
        page = duplicate_index.group_page(session, album_id, threshold, after, limit, _duplicate_json)
    next_cursor = _encode_cursor(page.next_after) if page.next_after is not None else None
    return jsonify({"threshold": threshold, "groups": page.groups, "next_cursor": next_cursor})


def _duplicate_json(image: Any) -> dict[str, Any]:
    return {"id": image.id, "public_id": image.public_id, "phash": image.phash, "thumbnail_url": image.thumbnail_url}


@bp.delete("/<album_id>/images/<image_id>")
@album_access("manage")
def delete_image(album_id: str, image_id: str) -> Response:
    """Remove a photo: gone from the album at once; its Cloudinary asset is destroyed by a task."""
    if not (image_id.isascii() and image_id.isdigit()) or len(image_id) > 18 or int(image_id) < 1:
        raise ApiError(400, "invalid_parameter", "'image_id' must be a whole number from 1 to 999999999999999999.")
    load_album(album_id)
    with db.session_scope() as session:
        image = session.get(Image, int(image_id))
        if image is None or image.album_id != album_id or image.deleted_at is not None:
            raise ApiError(404, "image_not_found", "No such image in this album.")
        image.deleted_at = utcnow()
        deleted_id = image.id
        # Out of every duplicate group in the same transaction (indexed deletes, no grouping).
        duplicate_index.forget(session, album_id, [deleted_id])

    def publish() -> None:
        send(task("album.destroy_image", deleted_id))
        request_recount(album_id, delay=0)

    # Committed: the photo is gone from the album; the destroy and the recount follow (heal
    # sends them if the broker cannot take them now).
    _publish_after_commit("delete", publish)
    return _accepted({"id": deleted_id, "status": "deleted"})


@bp.post("/<album_id>/reprocess")
@album_access("manage")
def reprocess(album_id: str) -> Response:
    """Run the pipeline again: ``mode`` ``missing`` (stages not done) or ``all``."""
    mode = request.args.get("mode")
    raw = read_body()
    if raw:  # a body, when sent, is checked even if the query decides
        body = json_object(raw, 'a JSON object like {"mode": "missing"}')
        body_mode = body.get("mode", "missing")
        if body_mode not in pipeline.REPROCESS_MODES:
            raise ApiError(400, "invalid_parameter", "'mode' in the body must be 'missing' or 'all'.")
        mode = body_mode if mode is None else mode
    mode = "missing" if mode is None else mode
    if mode not in pipeline.REPROCESS_MODES:
        raise ApiError(400, "invalid_parameter", "'mode' must be 'missing' or 'all'.")
    load_album(album_id)
    with db.session_scope() as session:
        todo = pipeline.reset_for_reprocess(session, album_id, mode,
                                            pipeline.RetryPolicy.from_settings(_settings()))
    enqueued = 0

    def publish() -> None:
        nonlocal enqueued
        enqueued = send_reprocess(todo)

    _publish_after_commit("reprocess", publish)
    return _accepted({"mode": mode, "images": len(todo), "enqueued": enqueued})


def _accepted(body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.status_code = 202
    return response
