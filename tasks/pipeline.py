"""The Celery tasks. Thin: each loads what it needs by id, calls ``common.pipeline``, commits,
and only then enqueues what follows. Names are stable (``album.*``): messages in flight and
the beat schedule refer to them.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import cloudinary.exceptions
from celery import Task
from sqlalchemy.exc import OperationalError

from common import cloudinary_client, db, pipeline
from common.config import get_settings
from common.coordination import active_albums, reconcile_gate, recount_gate
from common.enqueue import request_reconcile, request_recount, send
from common.logs import log
from common.models import STAGE_DONE, STAGE_PENDING, Album, Image, utcnow
from worker.app import app

logger = logging.getLogger(__name__)

#: Transient failures (Cloudinary 5xx, network): retried with backoff, then the stage fails.
MAX_RETRIES = 5
#: A database that is briefly unreachable or locked: every task retries itself (all are idempotent).
DB_RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": 2, "retry_backoff_max": 60, "retry_jitter": True}
#: Waits for the Admin API budget are not failures, but are bounded too (24 x 15 min = 6 h).
MAX_RATE_LIMIT_WAITS = 24


def _backoff(retries: int) -> int:
    # 2, 4, 8, 16, 32 s: far below the broker's visibility timeout.
    return min(2 ** (retries + 1), 60)


def _cloudinary() -> None:
    cloudinary_client.ensure_configured(get_settings())


def _follow_ups(result: pipeline.IngestResult) -> None:
    if result.needs_metadata and result.created:
        send(fetch_metadata.s(result.image_id))
    if result.needs_thumbnails:
        send(generate_thumbnails.s(result.image_id))


@app.task(name="album.ingest", bind=True, max_retries=MAX_RETRIES, **DB_RETRY)
def ingest(self: Task, album_id: str, resource: dict[str, Any], uploaded_by: str | None = None, source: str = "webhook") -> None:
    """Upsert the photo from a notification (or a reconcile listing), then thumbnails and a recount."""
    with db.session_scope() as session:
        result = pipeline.ingest(session, album_id, resource, uploaded_by, source)
    if result is None:
        log(logger, logging.WARNING, "ingest skipped", album_id=album_id, public_id=resource.get("public_id"))
        return
    log(logger, logging.INFO, "ingested", album_id=album_id, image_id=result.image_id, created=result.created,
        needs_metadata=result.needs_metadata)
    _follow_ups(result)
    if result.created:
        request_recount(album_id)


def _rate_limited(task: Task, exc: cloudinary_client.RateLimitedError, image_id: int | None = None, stage: str | None = None) -> None:
    kwargs = dict(task.request.kwargs or {})
    waits = int(kwargs.get("rate_limit_waits", 0))
    if waits >= MAX_RATE_LIMIT_WAITS:
        # Bounded like every retry: the image's stage fails with the reason; a reconcile gives
        # up (the next upload_done or the beat's reconcile_active lists the album again).
        log(logger, logging.WARNING, "gave up waiting for the Admin API budget", task=task.name, waits=waits)
        if image_id is not None and stage is not None:
            with db.session_scope() as session:
                pipeline.mark_failed(session, image_id, stage, "Cloudinary Admin API rate limit did not reset in time")
        return
    countdown = min(exc.wait + 1, get_settings().rate_limit_max_wait)
    log(logger, logging.INFO, "waiting for the Admin API budget", seconds=round(countdown, 1), task=task.name)
    # Waiting is not failing: these retries don't spend the task's MAX_RETRIES.
    kwargs["rate_limit_waits"] = waits + 1
    raise task.retry(kwargs=kwargs, countdown=countdown, max_retries=None, exc=exc)


def _retry_or_fail(task: Task, exc: BaseException, image_id: int, stage: str, failures: int) -> None:
    """A transient Cloudinary failure: retry with backoff, and after the last one mark the
    image's stage failed with the error kept."""
    if failures >= MAX_RETRIES:
        with db.session_scope() as session:
            pipeline.mark_failed(session, image_id, stage, str(exc))
        return
    raise task.retry(countdown=_backoff(failures), max_retries=None, exc=exc)


@app.task(name="album.fetch_metadata", bind=True, max_retries=MAX_RETRIES, **DB_RETRY)
def fetch_metadata(self: Task, image_id: int, rate_limit_waits: int = 0) -> None:
    """Admin API ``resource`` for a photo whose notification lacked the analysis."""
    with db.session_scope() as session:
        image = session.get(Image, image_id)
        if image is None or image.deleted_at is not None or image.metadata_status == STAGE_DONE:
            return
        public_id, asset_type = image.public_id, image.type
    _cloudinary()
    try:
        resource = cloudinary_client.fetch_resource(public_id, asset_type)
    except cloudinary_client.RateLimitedError as exc:
        return _rate_limited(self, exc, image_id, "metadata")
    except cloudinary.exceptions.NotFound:
        with db.session_scope() as session:
            pipeline.mark_failed(session, image_id, "metadata", "not found on Cloudinary")
        return
    except cloudinary_client.TRANSIENT_ERRORS as exc:
        return _retry_or_fail(self, exc, image_id, "metadata", failures=self.request.retries - rate_limit_waits)
    with db.session_scope() as session:
        image = pipeline.store_metadata(session, image_id, resource)
        album_id = image.album_id if image else None
    if album_id:
        request_recount(album_id)


@app.task(name="album.generate_thumbnails", bind=True, max_retries=MAX_RETRIES, **DB_RETRY)
def generate_thumbnails(self: Task, image_id: int) -> None:
    """Upload API ``explicit`` with eager transformations; stores signed delivery URLs."""
    with db.session_scope() as session:
        image = session.get(Image, image_id)
        if image is None or image.deleted_at is not None or image.thumbnails_status == STAGE_DONE:
            return
        public_id, asset_type, album_id = image.public_id, image.type, image.album_id
    _cloudinary()
    try:
        thumb, preview = cloudinary_client.generate_derived(public_id, asset_type)
    except cloudinary.exceptions.NotFound:
        with db.session_scope() as session:
            pipeline.mark_failed(session, image_id, "thumbnails", "not found on Cloudinary")
        return
    except cloudinary_client.TRANSIENT_ERRORS as exc:
        return _retry_or_fail(self, exc, image_id, "thumbnails", failures=self.request.retries)
    with db.session_scope() as session:
        pipeline.store_thumbnails(session, image_id, thumb.url, preview.url, thumb.width, thumb.height)
    request_recount(album_id)


@app.task(name="album.recount", bind=True, max_retries=MAX_RETRIES, **DB_RETRY)
def recount(self: Task, album_id: str) -> None:
    """Debounced: the gate is released *before* reading, so any change committed after this
    read schedules another recount, and the last one is exact."""
    recount_gate.release(album_id)
    thumb = cloudinary_client.THUMBNAIL
    with db.session_scope() as session:
        album = pipeline.recount(session, album_id, (thumb["width"], thumb["height"]))
        count = album.images_count if album else None
    log(logger, logging.INFO, "recounted", album_id=album_id, images_count=count)


@app.task(name="album.reconcile", bind=True, max_retries=MAX_RETRIES, **DB_RETRY)
def reconcile(self: Task, album_id: str, cursor: str | None = None, rate_limit_waits: int = 0) -> None:
    """List the album's tag on Cloudinary and ingest every photo no webhook brought.

    It spends the rate-limited Admin API, so it leaves ``admin_budget_reserve`` calls for
    ``fetch_metadata`` and waits for the reset instead. Pages continue in a new task run
    (``cursor``), so a wait never repeats pages already done."""
    settings = get_settings()
    if cursor is None:
        reconcile_gate.release(album_id)
    _cloudinary()
    try:
        page = cloudinary_client.list_by_tag(album_id, cursor, reserve=settings.admin_budget_reserve)
    except cloudinary_client.RateLimitedError as exc:
        return _rate_limited(self, exc)
    except cloudinary_client.TRANSIENT_ERRORS as exc:
        raise self.retry(countdown=_backoff(self.request.retries), exc=exc)
    resources = [r for r in page.get("resources", []) if isinstance(r, dict) and r.get("public_id")]
    with db.session_scope() as session:
        known = pipeline.known_public_ids(session, album_id, (r["public_id"] for r in resources))
        if page.get("next_cursor") is None:
            album = session.get(Album, album_id)
            if album is not None:
                album.last_reconciled_at = utcnow()
    missing = [r for r in resources if r["public_id"] not in known]
    log(logger, logging.INFO, "reconcile page", album_id=album_id, listed=len(resources), missing=len(missing))
    send(*(ingest.s(album_id, resource, None, "reconcile") for resource in missing))
    if page.get("next_cursor"):
        send(reconcile.s(album_id, page["next_cursor"]))


@app.task(name="album.destroy_image", bind=True, max_retries=MAX_RETRIES, **DB_RETRY)
def destroy_image(self: Task, image_id: int) -> None:
    """Remove a deleted image's asset from Cloudinary (the row stays, marked deleted)."""
    with db.session_scope() as session:
        image = session.get(Image, image_id)
        if image is None:
            return
        public_id, asset_type = image.public_id, image.type
    _cloudinary()
    try:
        cloudinary_client.destroy(public_id, asset_type)
    except cloudinary_client.TRANSIENT_ERRORS as exc:
        if self.request.retries >= MAX_RETRIES:
            return  # the beat sweep tries again later: destroyed_at is still empty
        raise self.retry(countdown=_backoff(self.request.retries), exc=exc)
    with db.session_scope() as session:
        image = session.get(Image, image_id)
        if image is not None:
            image.destroyed_at = utcnow()


@app.task(name="album.remove_deleted", bind=True, max_retries=MAX_RETRIES, **DB_RETRY)
def remove_deleted(self: Task, album_id: str, payload: dict[str, Any], uploaded_by: str | None = None) -> None:
    """A ``delete`` notification: mark the album's images with those public ids deleted."""
    resources = payload.get("resources") or []
    public_ids = [r.get("public_id") for r in resources if isinstance(r, dict) and isinstance(r.get("public_id"), str)]
    with db.session_scope() as session:
        removed = pipeline.mark_deleted(session, album_id, public_ids)
    if removed:
        request_recount(album_id)


@app.task(name="album.record_eager", bind=True, max_retries=MAX_RETRIES, **DB_RETRY)
def record_eager(self: Task, album_id: str, payload: dict[str, Any], uploaded_by: str | None = None) -> None:
    """An ``eager`` notification: the derived images exist; store their signed URLs."""
    public_id = payload.get("public_id")
    if not isinstance(public_id, str):
        return
    _cloudinary()
    with db.session_scope() as session:
        image = pipeline.find_image(session, {"public_id": public_id})
        if image is None or image.album_id != album_id or image.thumbnails_status == STAGE_DONE:
            return
        thumb = cloudinary_client.THUMBNAIL
        pipeline.store_thumbnails(
            session, image.id,
            cloudinary_client.delivery_url(public_id, thumb, image.type),
            cloudinary_client.delivery_url(public_id, cloudinary_client.PREVIEW, image.type),
            thumb["width"], thumb["height"],
        )
    request_recount(album_id)


@app.task(name="album.reconcile_active", bind=True)
def reconcile_active(self: Task) -> None:
    """Beat: reconcile the albums whose upload form went out recently, so a photo whose webhook
    was lost arrives even when its client never says upload_done again."""
    settings = get_settings()
    for album_id in active_albums.since(settings.active_album_window):
        request_reconcile(album_id, delay=0)


@app.task(name="album.sweep_stuck", bind=True)
def sweep_stuck(self: Task) -> None:
    """Beat, every minute: re-enqueue images stuck in a stage (their message was lost, e.g. a
    Redis restart); after a few sweeps the stage fails with its error kept — never forever.
    Deleted images whose Cloudinary asset is not confirmed gone get their destroy again."""
    settings = get_settings()
    requeue: list[Any] = []
    albums: set[str] = set()
    with db.session_scope() as session:
        for image in pipeline.stuck_images(session, timedelta(seconds=settings.stuck_after)):
            albums.add(image.album_id)
            if image.attempts >= 3:
                for stage in ("metadata", "thumbnails"):
                    if getattr(image, f"{stage}_status") == STAGE_PENDING:
                        pipeline.mark_failed(session, image.id, stage, "stuck: no worker finished it after 3 sweeps")
                continue
            image.attempts += 1
            image.updated_at = utcnow()
            if image.metadata_status == STAGE_PENDING:
                requeue.append(fetch_metadata.s(image.id))
            if image.thumbnails_status == STAGE_PENDING:
                requeue.append(generate_thumbnails.s(image.id))
        for image_id in pipeline.undestroyed_images(session, timedelta(seconds=settings.stuck_after)):
            requeue.append(destroy_image.s(image_id))
    send(*requeue)
    for album_id in albums:
        request_recount(album_id)
    if requeue:
        log(logger, logging.INFO, "sweep re-enqueued", tasks=len(requeue), albums=len(albums))
