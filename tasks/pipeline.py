"""The Celery tasks. Thin: each loads what it needs by id, calls ``common.pipeline``, commits,
and only then enqueues what follows. Names are stable (``album.*``): messages in flight and
the beat schedule refer to them.

No task is the only record of its work: the database says what is still owed (an image's
pending stage and ``due_at``, an album's uncovered reconcile request, a changed image after the
last recount, a deleted image not yet destroyed), and ``heal`` sends again whatever is overdue.
So a message may be lost (a Redis restarted empty, a worker killed holding it, a publish that
failed after a commit) and the photo is only delayed.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from celery import Task
from sqlalchemy.exc import InterfaceError, OperationalError

from common import cloudinary_client, db, duplicates, pipeline
from common.cloudinary_client import PermanentError, RateLimitedError, TransientError
from common.config import Settings, get_settings
from common.coordination import (broker_epoch, client as redis_client, cloudinary_outage, heal_lease, reconcile_gate,
                                 recount_gate)
from common.enqueue import BrokerUnavailable, request_reconcile, request_recount, send, stage_tasks, task
from common.logs import log
from common.models import STAGE_DONE, Album, Image, utcnow
from worker.app import app

logger = logging.getLogger(__name__)

#: A database briefly unreachable or locked: the task retries itself a few times (every task is
#: idempotent); past that, the work is still due in the database and ``heal`` sends it again.
DB_RETRY: dict[str, Any] = {"autoretry_for": (OperationalError, InterfaceError), "retry_kwargs": {"max_retries": 5},
                            "retry_backoff": 2, "retry_backoff_max": 30, "retry_jitter": True}
#: ``ingest`` holds the only copy of a notification until its row is written: it waits out a
#: database outage (PostgreSQL restarting, a cut link) far longer than the other tasks, whose
#: work the database itself keeps (heal sends it again). At most 30 s apart, for hours.
INGEST_RETRY: dict[str, Any] = {**DB_RETRY, "retry_kwargs": {"max_retries": 2000}}
#: Waits for the Admin API budget are not failures, but are bounded too: after this many a
#: reconcile run gives up and the request stays owed (``heal`` asks again later).
MAX_RATE_LIMIT_WAITS = 24
#: Images re-sent per heal batch, and batches per heal run.
HEAL_BATCH = 500
HEAL_BATCHES = 10


def _policy() -> pipeline.RetryPolicy:
    return pipeline.RetryPolicy.from_settings(get_settings())


def _cloudinary() -> None:
    cloudinary_client.ensure_configured(get_settings())


def _after_commit(what: str, publish: Callable[[], Any]) -> None:
    """Send what follows a committed change. A broker that is down now is no failure of this
    task: the change is committed and ``heal`` sends its follow-ups once the broker is back."""
    try:
        publish()
    except BrokerUnavailable as exc:
        log(logger, logging.WARNING, "broker unavailable; heal will send it", what=what, error=str(exc))


def _follow_ups(result: pipeline.IngestResult, album_id: str) -> None:
    def publish() -> None:
        if result.duplicate_of is not None:
            # Same bytes as an image already there: deleted on arrival, never counted.
            send(task("album.destroy_image", result.image_id))
            return
        send(*stage_tasks(result.image_id, result.needs_metadata and result.created, result.needs_thumbnails))
        if result.needs_index:
            send(task("album.index_duplicates", result.image_id))
        if result.created:
            request_recount(album_id)

    _after_commit("ingest follow-ups", publish)


@app.task(name="album.ingest", bind=True, **INGEST_RETRY)
def ingest(self: Task, album_id: str, resource: dict[str, Any], uploaded_by: str | None = None, source: str = "webhook") -> None:
    """Upsert the photo from a notification, then its thumbnails, analysis and a recount."""
    with db.session_scope() as session:
        result = pipeline.ingest(session, album_id, resource, uploaded_by, source, _policy(),
                                 get_settings().drop_same_bytes)
    if result is None:
        log(logger, logging.WARNING, "ingest skipped", album_id=album_id, public_id=resource.get("public_id"))
        return
    log(logger, logging.INFO, "ingested", album_id=album_id, image_id=result.image_id, created=result.created,
        needs_metadata=result.needs_metadata, duplicate_of=result.duplicate_of)
    _follow_ups(result, album_id)


def _stage_subject(image_id: int, stage: str) -> pipeline.StageSubject | None:
    with db.session_scope() as session:
        return pipeline.stage_subject(session, image_id, stage)


def _stage_failed(task: Task, image_id: int, stage: str, exc: Exception) -> None:
    """A stage's Cloudinary call failed: for good (failed, with the reason) or for now (retried
    with backoff, the reason kept on the image meanwhile, for up to ``RETRY_WINDOW``)."""
    settings = get_settings()
    with db.session_scope() as session:
        if isinstance(exc, PermanentError):
            pipeline.mark_failed(session, image_id, stage, str(exc))
            countdown = None
        else:
            countdown = pipeline.retry_later(session, image_id, stage, str(exc), _policy(), settings.queue_max_countdown)
        album_id = image.album_id if (image := session.get(Image, image_id)) else None
    log(logger, logging.WARNING, f"{stage} failed", image_id=image_id, error=str(exc),
        retry_in=round(countdown, 1) if countdown is not None else None)
    if countdown is not None:
        raise task.retry(countdown=countdown, exc=exc)
    if album_id:  # failed for good, or heal sends it when its backoff ends
        _after_commit("recount", lambda: request_recount(album_id))


@app.task(name="album.fetch_metadata", bind=True, max_retries=None, **DB_RETRY)
def fetch_metadata(self: Task, image_id: int) -> None:
    """Faces, colours, EXIF and pHash for a photo whose notification lacked them (found by a
    reconcile), through the Upload API's ``explicit``, which is not rate-limited."""
    subject = _stage_subject(image_id, "metadata")
    if subject is None:
        return
    album_id = subject.album_id
    _cloudinary()
    try:
        resource = cloudinary_client.fetch_analysis(subject.public_id, subject.asset_type, subject.resource_type)
    except (PermanentError, TransientError) as exc:
        return _stage_failed(self, image_id, "metadata", exc)
    with db.session_scope() as session:
        pipeline.store_metadata(session, image_id, resource)
        dropped = get_settings().drop_same_bytes and pipeline.drop_same_bytes_copy(session, image_id)

    def publish() -> None:
        if dropped:  # the album already had these bytes: this copy's asset goes, nothing to index
            send(task("album.destroy_image", image_id))
        else:
            send(task("album.index_duplicates", image_id))
        request_recount(album_id)

    _after_commit("index or destroy, and recount", publish)


@app.task(name="album.index_duplicates", bind=True, **DB_RETRY)
def index_duplicates(self: Task, image_id: int) -> None:
    """Bring the image's pHash into the album's duplicates index (its near neighbours through
    the bands, the edges to them): runs after the pHash is stored, never on a request. Running
    it again changes nothing; heal sends it again for an image whose index row lags its hash."""
    with db.session_scope() as session:
        changed = duplicates.index_image(session, image_id)
    if changed:
        log(logger, logging.INFO, "duplicates indexed", image_id=image_id)


@app.task(name="album.generate_thumbnails", bind=True, max_retries=None, **DB_RETRY)
def generate_thumbnails(self: Task, image_id: int) -> None:
    """Upload API ``explicit`` with eager transformations; stores signed delivery URLs."""
    subject = _stage_subject(image_id, "thumbnails")
    if subject is None:
        return
    album_id = subject.album_id
    _cloudinary()
    if subject.resource_type == cloudinary_client.VIDEO:
        return _request_video_derived(self, image_id, subject)
    try:
        thumb, preview = cloudinary_client.generate_derived(subject.public_id, subject.asset_type, subject.resource_type)
    except (PermanentError, TransientError) as exc:
        return _stage_failed(self, image_id, "thumbnails", exc)
    with db.session_scope() as session:
        pipeline.store_thumbnails(session, image_id, thumb.url, preview.url, thumb.width, thumb.height)
    _after_commit("recount", lambda: request_recount(album_id))


def _request_video_derived(task: Task, image_id: int, subject: pipeline.StageSubject) -> None:
    """A video's poster and preview are made in the background (Cloudinary transforms only
    small videos synchronously): the eager notification they end with comes to the webhook,
    and ``record_eager`` stores them. Until then the stage stays pending and due, so if that
    notification is lost, heal asks again after the lease."""
    settings = get_settings()
    notify = cloudinary_client.notification_url(subject.uploaded_by or "", subject.album_id, subject.organization_id,
                                                settings)
    try:
        cloudinary_client.request_derived(subject.public_id, subject.asset_type, subject.resource_type, notify)
    except (PermanentError, TransientError) as exc:
        return _stage_failed(task, image_id, "thumbnails", exc)
    log(logger, logging.INFO, "video derived requested", image_id=image_id)


@app.task(name="album.recount", bind=True, **DB_RETRY)
def recount(self: Task, album_id: str) -> None:
    """Debounced: the gate is released *before* reading, so any change committed after this
    read schedules another recount, and the last one is exact."""
    recount_gate.release(album_id)
    thumb = cloudinary_client.THUMBNAIL
    with db.session_scope() as session:
        album = pipeline.recount(session, album_id, (thumb["width"], thumb["height"]))
        count = album.images_count if album else None
    log(logger, logging.INFO, "recounted", album_id=album_id, images_count=count)


@app.task(name="album.reconcile", bind=True, max_retries=None, **DB_RETRY)
def reconcile(self: Task, album_id: str, full: bool = False, rate_limit_waits: int = 0, failures: int = 0) -> None:
    """List one page of the album's tag on Cloudinary, newest first, and ingest every photo no
    webhook brought; then send itself for the next page. An incremental run stops at the page
    reaching below the last watermark; a full run walks every page. Progress is kept with the
    album after each page, so a run whose next message is lost, or that must wait out the Admin
    budget for longer than the queue may hold a message, resumes where it was. The gate stays
    shut while the run lasts: one run per album at a time.

    It spends the rate-limited Admin API, so it leaves ``admin_budget_reserve`` calls of each
    window unspent and waits for the reset instead."""
    settings = get_settings()
    policy = _policy()
    reconcile_gate.hold(album_id, policy.lease)
    with db.session_scope() as session:
        album = session.get(Album, album_id)
        if album is None:
            reconcile_gate.release(album_id)
            return
        progress = pipeline.reconcile_progress(album, full)
    _cloudinary()
    try:
        page = cloudinary_client.list_by_tag(album_id, progress.cursor, reserve=settings.admin_budget_reserve,
                                             resource_type=progress.resource_type)
    except RateLimitedError as exc:
        wait = exc.wait + 1
        log(logger, logging.INFO, "waiting for the Admin API budget", album_id=album_id, seconds=round(wait, 1))
        reconcile_gate.hold(album_id, wait + policy.lease)
        if wait <= settings.queue_max_countdown and rate_limit_waits < MAX_RATE_LIMIT_WAITS:
            raise self.retry(args=(album_id,), kwargs={"full": full, "rate_limit_waits": rate_limit_waits + 1},
                             countdown=wait, exc=exc)
        return  # a long wait is not held in the queue: heal asks again once the gate lapses
    except (PermanentError, TransientError) as exc:
        if failures >= 5:
            reconcile_gate.release(album_id)  # still owed in the database: heal asks again later
            log(logger, logging.WARNING, "reconcile failed", album_id=album_id, error=str(exc))
            return
        countdown = min(policy.backoff(failures + 1), settings.queue_max_countdown)
        reconcile_gate.hold(album_id, countdown + policy.lease)
        raise self.retry(args=(album_id,), kwargs={"full": full, "failures": failures + 1}, countdown=countdown, exc=exc)

    resources = [r for r in page.get("resources", []) if isinstance(r, dict) and isinstance(r.get("public_id"), str)]
    with db.session_scope() as session:
        known = pipeline.known_public_ids(session, album_id, (r["public_id"] for r in resources))
        album = session.get(Album, album_id)
        reached = album is not None and not progress.full and pipeline.listing_reached_watermark(
            album, resources, settings.reconcile_overlap)
    missing = [r for r in resources if r["public_id"] not in known]
    created = []
    for resource in missing:
        # Ingested here, each in its own transaction, rather than queued: the watermark may move
        # past these photos only once they are in the database.
        with db.session_scope() as session:
            result = pipeline.ingest(session, album_id, resource, None, "reconcile", policy, settings.drop_same_bytes)
        if result is not None and result.created:
            created.append(result)
    log(logger, logging.INFO, "reconcile page", album_id=album_id, listed=len(resources), missing=len(missing),
        full=progress.full)
    for result in created:
        _follow_ups(result, album_id)
    progress = progress.after(resources, page.get("next_cursor"))
    more = bool(progress.cursor) and not reached
    if not more:
        with db.session_scope() as session:
            following = progress.next_listing(session.get(Album, album_id))
        if following is not None:  # the images are listed; the album's videos next
            progress, more = following, True
    if more:
        with db.session_scope() as session:
            pipeline.save_reconcile_progress(session, album_id, progress)
        _after_commit("next reconcile page", lambda: reconcile.apply_async(args=(album_id,), kwargs={"full": full}))
        return
    with db.session_scope() as session:
        again = pipeline.finish_reconcile(session, album_id, progress)
    reconcile_gate.release(album_id)
    if again:
        _after_commit("reconcile", lambda: request_reconcile(album_id))


@app.task(name="album.destroy_image", bind=True, max_retries=5, **DB_RETRY)
def destroy_image(self: Task, image_id: int) -> None:
    """Remove a deleted image's asset from Cloudinary (the row stays, marked deleted)."""
    with db.session_scope() as session:
        image = session.get(Image, image_id)
        if image is None or image.deleted_at is None or image.destroyed_at is not None:
            return
        public_id, asset_type, resource_type = image.public_id, image.type, image.resource_type
    _cloudinary()
    try:
        cloudinary_client.destroy(public_id, asset_type, resource_type)
    except PermanentError:
        pass  # nothing to destroy: gone already
    except TransientError as exc:
        if self.request.retries >= 5:
            return  # heal tries again later: destroyed_at is still empty
        raise self.retry(countdown=_policy().backoff(self.request.retries + 1), exc=exc)
    with db.session_scope() as session:
        image = session.get(Image, image_id)
        if image is not None:
            image.destroyed_at = utcnow()


@app.task(name="album.remove_deleted", bind=True, **DB_RETRY)
def remove_deleted(self: Task, album_id: str, payload: dict[str, Any], uploaded_by: str | None = None) -> None:
    """A ``delete`` notification: mark the album's images with those public ids deleted."""
    resources = payload.get("resources") or []
    public_ids = [r.get("public_id") for r in resources if isinstance(r, dict) and isinstance(r.get("public_id"), str)]
    with db.session_scope() as session:
        removed = pipeline.mark_deleted(session, album_id, public_ids)
    if removed:
        _after_commit("recount", lambda: request_recount(album_id))


@app.task(name="album.record_eager", bind=True, **DB_RETRY)
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
        thumb, _ = cloudinary_client.derived_transformations(image.resource_type)
        thumb_url, preview_url = cloudinary_client.derived_urls(public_id, image.type, image.resource_type)
        pipeline.store_thumbnails(session, image.id, thumb_url, preview_url, thumb["width"], thumb["height"])
    _after_commit("recount", lambda: request_recount(album_id))


#: Where heal keeps the time of its last run: the next looks for changes since then.
_LAST_HEAL_KEY = "album:heal:last"


@app.task(name="album.heal", bind=True)
def heal(self: Task) -> None:
    """Beat, every ``HEAL_INTERVAL``: carry out what the database says is owed and overdue.

    - stages whose task should have finished by now are sent again (each re-send doubles the
      lease; past ``RETRY_WINDOW`` the stage fails with the last reason);
    - albums with an image changed after their last recount are recounted;
    - albums owed a reconcile (``upload_done``, forms out recently, a slow schedule) get one;
    - deleted images whose Cloudinary asset is not confirmed gone get their destroy again;
    - images changed lately whose duplicates index lags their pHash are indexed again;
    - a broker that lost its data (restarted, failed over) makes everything pending due now
      and every active album reconciled: queued messages and lost webhooks alike come back;
    - Cloudinary working again after an outage makes every stage waiting out a retry pause due
      now (and while it fails every call, one of them is tried per run to find out).

    One heal runs at a time across hosts; a heal that finds another running returns."""
    settings = get_settings()
    # Two heal intervals, not longer: a worker SIGKILLed mid-heal keeps the lease until it
    # expires, and every lost recount and stage waits for heal meanwhile (a 60 s lease held the
    # chaos suite's count wrong for 58 s). A run outlasting it lets a second in: harmless.
    if not heal_lease.acquire(max(5.0, settings.heal_interval * 2)):
        return
    try:
        _heal(settings)
    finally:
        heal_lease.release()


def _after_cloudinary_outage(settings: Settings) -> None:
    """Once Cloudinary works again, the stages waiting out their backoff are due now; while it
    fails every call, one of them is tried per heal run to find out (see CloudinaryOutage)."""
    if cloudinary_outage.take_recovery():
        with db.session_scope() as session:
            due = pipeline.make_backoffs_due(session)
        log(logger, logging.WARNING, "Cloudinary works again: re-sending the stages waiting out a retry pause",
            images=due)
    elif cloudinary_outage.failing_for() >= cloudinary_outage.OUTAGE_AFTER:
        with db.session_scope() as session:
            probe = pipeline.probe_backoff(session, settings.heal_interval)
        if probe is not None:
            log(logger, logging.INFO, "Cloudinary failing: probing with one retry", image_id=probe)


def _heal(settings: Settings) -> None:
    policy = _policy()
    started = time.time()
    lost = broker_epoch.changed()
    if lost:
        with db.session_scope() as session:
            due = pipeline.make_all_due(session)
        log(logger, logging.WARNING, "the broker is new or lost its data: re-sending what is pending", images=due)

    _after_cloudinary_outage(settings)
    resent = 0
    for _ in range(HEAL_BATCHES):
        with db.session_scope() as session:
            batch = pipeline.claim_due(session, policy, limit=HEAL_BATCH)
        send(*(sig for r in batch for sig in stage_tasks(r.image_id, r.metadata, r.thumbnails)))
        resent += len(batch)
        if len(batch) < HEAL_BATCH:
            break

    r = redis_client()
    last = r.get(_LAST_HEAL_KEY)
    since = float(last) - 60 if last else started - settings.active_album_window
    with db.session_scope() as session:
        stale = pipeline.albums_needing_recount(session, datetime.fromtimestamp(since, timezone.utc))
        # Ends 50 s ago (index tasks still queued are not sent twice), within heal's 60 s
        # overlap, so consecutive windows leave no gap.
        unindexed = duplicates.stale_images(session, datetime.fromtimestamp(since, timezone.utc),
                                            utcnow() - timedelta(seconds=50))
    for album_id in stale:
        request_recount(album_id)
    send(*(task("album.index_duplicates", image_id) for image_id in unindexed))

    with db.session_scope() as session:
        targets = pipeline.albums_to_reconcile(session, settings, everything_active=lost)
        if lost:
            for target in targets:
                pipeline.request_reconcile(session, target.album_id)
    for target in targets:
        request_reconcile(target.album_id, delay=0, full=target.full)

    with db.session_scope() as session:
        undestroyed = pipeline.undestroyed_images(session, timedelta(seconds=policy.lease))
    send(*(task("album.destroy_image", image_id) for image_id in undestroyed))
    r.set(_LAST_HEAL_KEY, started)
    if resent or stale or targets or undestroyed or unindexed:
        log(logger, logging.INFO, "healed", resent=resent, recounts=len(stale), reconciles=len(targets),
            destroys=len(undestroyed), indexed=len(unindexed), broker_lost=lost)
