"""The pipeline's logic as plain functions on a session: what the Celery tasks in
``tasks/pipeline.py`` call, and what the unit tests call directly.

Every function is idempotent: it computes what is missing and does nothing when run again.

What the pipeline still owes is kept in the database, never only in a queued message: an image
with a stage pending carries ``due_at``, the time by which its dispatched task should have
finished (or its retry backoff ends). The heal task (``claim_due``) dispatches again whatever
is overdue, so a message lost with a killed worker or a Redis restart delays a photo by about
one lease, and a publish that failed after a commit is made good the same way.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import duplicates
from common.config import Settings
from common.models import (RESOURCE_IMAGE, RESOURCE_RAW, RESOURCE_TYPES, RESOURCE_VIDEO, STAGE_DONE, STAGE_FAILED,
                           STAGE_PENDING, Album, Image, image_status, utcnow)

STAGES = ("metadata", "thumbnails")


@dataclass(frozen=True)
class RetryPolicy:
    """How long dispatched work may take, how retries back off, and when to give up."""

    lease: float = 30.0
    window: float = 86400.0
    backoff_max: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(float(settings.stage_lease), float(settings.retry_window), float(settings.retry_backoff_max))

    #: Growth of the pause from one retry to the next. Gentle on purpose: sporadic errors (30 %
    #: of calls failing at random) should cost seconds, while a long outage still spaces the
    #: retries out to ``backoff_max`` within half an hour (2, 3, 4.5 ... 600 s after 16 retries).
    GROWTH = 1.5

    def backoff(self, failures: int) -> float:
        """Pause after ``failures`` (1, 2, ...) transient failures in a row, capped, with jitter
        so that a burst failed by one outage does not come back as one burst."""
        base = min(2.0 * self.GROWTH ** max(0, failures - 1), self.backoff_max)
        return base * random.uniform(0.75, 1.0)

    def lease_for(self, attempts: int) -> float:
        """How long the dispatch number ``attempts`` may stay unfinished: the lease, growing at
        each re-dispatch (a long queue is not a lost message), capped."""
        return min(self.lease * self.GROWTH ** max(0, attempts - 1), max(self.lease, self.backoff_max))


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def _pending(image: Image) -> bool:
    return STAGE_PENDING in (image.metadata_status, image.thumbnails_status)


def _settle(image: Image) -> None:
    """A stage ended. The other one's retries, if any, start again from the short pause; once
    no stage is pending, nothing is due any more."""
    image.failures = 0
    if not _pending(image):
        image.due_at = None
        image.attempts = 0
        if STAGE_FAILED not in (image.metadata_status, image.thumbnails_status):
            image.error = None

#: Keys the signed upload form asks Cloudinary to put in every upload notification.
ANALYSIS_KEYS = ("faces", "colors", "phash")
COVER_SIZE = 4


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def resource_type_of(resource: dict[str, Any]) -> str:
    """The asset's Cloudinary resource type; an answer without one is an image (the default)."""
    value = resource.get("resource_type")
    return value if value in RESOURCE_TYPES else RESOURCE_IMAGE


def has_analysis(resource: dict[str, Any]) -> bool:
    """Whether the resource carries all the analysis Cloudinary offers for its kind: faces,
    colours and pHash for a photo, the duration for a video, nothing for a raw file."""
    kind = resource_type_of(resource)
    if kind == RESOURCE_VIDEO:
        return isinstance(resource.get("duration"), (int, float))
    if kind == RESOURCE_RAW:
        return True
    return all(key in resource for key in ANALYSIS_KEYS)


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _apply_resource(image: Image, resource: dict[str, Any]) -> bool:
    """Copy what the resource carries onto the image; true when it carried the analysis."""
    for field in ("asset_id", "version", "format", "width", "height", "bytes"):
        if resource.get(field) is not None:
            setattr(image, field, resource[field])
    if isinstance(resource.get("type"), str):
        image.type = resource["type"]
    if "resource_type" in resource:
        image.resource_type = resource_type_of(resource)
    image.original_filename = _text(resource.get("original_filename"), 255) or image.original_filename
    image.etag = _text(resource.get("etag"), 64) or image.etag
    if image.uploaded_at is None:
        image.uploaded_at = _parse_time(resource.get("created_at"))
    if not has_analysis(resource):
        return False
    if (image.resource_type or RESOURCE_IMAGE) != RESOURCE_IMAGE:
        # Cloudinary offers no faces, colours or pHash for a video or a raw file: none to wait for.
        duration = resource.get("duration")
        image.duration = float(duration) if isinstance(duration, (int, float)) else None
        image.image_metadata = {}
        image.metadata_status = STAGE_DONE
        return True
    image.faces = resource.get("faces") or []
    image.colors = resource.get("colors") or []
    image.predominant = resource.get("predominant") or {}
    image.phash = resource.get("phash")
    image.image_metadata = resource.get("image_metadata") or {}
    image.metadata_status = STAGE_DONE
    return True


@dataclass(frozen=True)
class IngestResult:
    image_id: int
    created: bool
    needs_metadata: bool
    needs_thumbnails: bool
    #: The pHash was stored by this call: the duplicates index is to take it in.
    needs_index: bool = False
    #: The new image repeats this one (same bytes in the album): it was deleted on arrival and
    #: its asset is to be destroyed.
    duplicate_of: int | None = None


def _lock_bytes(session: Session, album_id: str, etag: str) -> None:
    """Until this transaction ends, be the only one adding these bytes to the album, so two
    uploads of the same file arriving together cannot both miss each other. PostgreSQL: an
    advisory lock on (album, etag), so different files never wait for each other. SQLite has no
    row or advisory locks, and two deferred transactions could both read before either writes:
    a write first takes its database-wide write lock (SQLite serialises writers anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"album-etag:{album_id}:{etag}"))))
    else:
        session.execute(update(Album).where(Album.id == album_id).values(images_count=Album.images_count))


def same_bytes_in_album(session: Session, album_id: str, etag: str | None, public_id: str) -> Image | None:
    """The album's live image with these bytes (Cloudinary's ``etag``), other than ``public_id``."""
    if not etag:
        return None
    return session.scalars(
        select(Image)
        .where(Image.album_id == album_id, Image.etag == etag, Image.deleted_at.is_(None), Image.public_id != public_id)
        .order_by(Image.id)
        .limit(1)
    ).first()


def find_image(session: Session, resource: dict[str, Any]) -> Image | None:
    conditions = []
    if resource.get("asset_id"):
        conditions.append(Image.asset_id == resource["asset_id"])
    if resource.get("public_id"):
        conditions.append(Image.public_id == resource["public_id"])
    if not conditions:
        return None
    return session.scalars(select(Image).where(or_(*conditions)).with_for_update()).first()


def ingest(session: Session, album_id: str, resource: dict[str, Any], uploaded_by: str | None, source: str = "webhook",
           policy: RetryPolicy = RetryPolicy(), drop_same_bytes: bool = True) -> IngestResult | None:
    """Upsert the image by ``asset_id``/``public_id``. Returns None for an unknown album or a
    resource without ``public_id`` (logged by the task, not retried: it cannot get better).
    A new image is due one lease from now: its follow-up tasks are sent after the commit, and
    if they never run, the heal task sends them again. With ``drop_same_bytes``, a new image
    whose bytes (etag) the album already holds is recorded as its duplicate and deleted."""
    public_id = resource.get("public_id")
    if not isinstance(public_id, str) or not public_id or session.get(Album, album_id) is None:
        return None
    image = find_image(session, resource)
    created = image is None
    original: Image | None = None
    if image is None:
        etag = _text(resource.get("etag"), 64)
        if etag and drop_same_bytes:
            _lock_bytes(session, album_id, etag)
            original = same_bytes_in_album(session, album_id, etag, public_id)
        if resource_type_of(resource) == RESOURCE_VIDEO:
            album = session.get(Album, album_id)
            if album is not None and not album.expects_videos:
                album.expects_videos = True  # reconciles list this album's videos from now on
        now = utcnow()
        image = Image(album_id=album_id, public_id=public_id, resource_type=resource_type_of(resource),
                      uploaded_by=uploaded_by, source=source, metadata_status=STAGE_PENDING,
                      thumbnails_status=STAGE_PENDING, attempts=0, pending_since=now,
                      due_at=now + timedelta(seconds=policy.lease))
        session.add(image)
    elif image.album_id != album_id:
        return None  # another album's photo: never move it
    had_metadata = image.metadata_status == STAGE_DONE
    if not had_metadata:
        _apply_resource(image, resource)
        _settle(image)
    if created and image.resource_type == RESOURCE_RAW:
        # A raw file (a PDF sent through ``auto/upload``) has no thumbnail to make.
        image.thumbnails_status = STAGE_DONE
        _settle(image)
    if original is not None:
        # Same bytes as an image already in the album: kept as a record (so a reconcile does not
        # bring it back, and the uploader can be told), but deleted on arrival, never counted,
        # and its asset destroyed (the destroy sweep retries until Cloudinary confirms).
        _mark_duplicate(image, original)
    try:
        session.flush()
    except IntegrityError:
        # A duplicate notification inserted the same photo concurrently: theirs stands.
        session.rollback()
        existing = find_image(session, resource)
        if existing is None:
            raise
        return IngestResult(existing.id, False, False, False)
    if original is not None:
        return IngestResult(image.id, True, False, False, duplicate_of=original.id)
    return IngestResult(
        image_id=image.id,
        created=created,
        needs_metadata=image.metadata_status != STAGE_DONE,
        needs_thumbnails=created and image.thumbnails_status != STAGE_DONE,
        needs_index=not had_metadata and image.metadata_status == STAGE_DONE,
    )


def store_metadata(session: Session, image_id: int, resource: dict[str, Any]) -> Image | None:
    image = session.get(Image, image_id)
    if image is None or image.metadata_status == STAGE_DONE:
        return image
    if not _apply_resource(image, resource):
        # The Admin API answered without the analysis asked for: keep an empty one, done.
        image.faces, image.colors, image.predominant = image.faces or [], image.colors or [], image.predominant or {}
        image.image_metadata = image.image_metadata or {}
        image.metadata_status = STAGE_DONE
    _settle(image)
    return image


def drop_same_bytes_copy(session: Session, image_id: int) -> bool:
    """A photo found by a reconcile (whose listing carries no etag) learns its etag with its
    metadata: if the album already holds those bytes, it is dropped as a re-sent upload is at
    ingest (deleted, ``duplicate_of`` set; the caller has its asset destroyed). True if so."""
    image = session.get(Image, image_id)
    if image is None or image.deleted_at is not None or not image.etag or image.duplicate_of is not None:
        return False
    _lock_bytes(session, image.album_id, image.etag)
    original = same_bytes_in_album(session, image.album_id, image.etag, image.public_id)
    if original is None:
        return False
    _mark_duplicate(image, original)
    return True


def _mark_duplicate(image: Image, original: Image) -> None:
    image.duplicate_of = original.id
    image.deleted_at = utcnow()
    image.due_at = None


@dataclass(frozen=True)
class StageSubject:
    """What a stage's Cloudinary call needs to know of its image."""

    public_id: str
    asset_type: str
    resource_type: str
    album_id: str
    organization_id: str
    uploaded_by: str | None


def stage_subject(session: Session, image_id: int, stage: str) -> StageSubject | None:
    """The live image whose ``stage`` is still pending, else None. (Six columns in one
    statement, not the ORM's whole image with its analysis JSON and then its album.)"""
    row = session.execute(
        select(Image.public_id, Image.type, Image.resource_type, Image.album_id, Album.organization_id,
               Image.uploaded_by)
        .outerjoin(Album, Album.id == Image.album_id)
        .where(Image.id == image_id, Image.deleted_at.is_(None), getattr(Image, f"{stage}_status") == STAGE_PENDING)
    ).first()
    if row is None:
        return None
    return StageSubject(row.public_id, row.type, row.resource_type, row.album_id, row.organization_id or "",
                        row.uploaded_by)


def store_thumbnails(session: Session, image_id: int, thumbnail_url: str, preview_url: str, width: int, height: int) -> Image | None:
    image = session.get(Image, image_id)
    if image is None:
        return None
    image.thumbnail_url = thumbnail_url
    image.preview_url = preview_url
    image.thumbnails_status = STAGE_DONE
    _settle(image)
    return image


def mark_failed(session: Session, image_id: int, stage: str, error: str) -> None:
    """The stage cannot succeed (Cloudinary says the asset is gone or invalid, or retrying ran
    out of time): ``failed``, with the reason."""
    image = session.get(Image, image_id)
    if image is None:
        return
    _fail(image, stage, error)


def _fail(image: Image, stage: str, error: str) -> None:
    setattr(image, f"{stage}_status", STAGE_FAILED)
    image.error = f"{stage}: {error}"[:2000]
    _settle(image)


def retry_later(session: Session, image_id: int, stage: str, error: str, policy: RetryPolicy,
                queue_max_countdown: float) -> float | None:
    """A transient failure (Cloudinary 5xx, the network): keep the reason on the image and
    schedule the next attempt. Returns the countdown for the task to retry itself with, or None
    when the heal task will dispatch it when it is due (a long pause is not held in the queue)
    or when retrying ran out of ``policy.window`` (the stage is then failed, with the reason)."""
    image = session.get(Image, image_id)
    if image is None or getattr(image, f"{stage}_status") != STAGE_PENDING:
        return None
    now = utcnow()
    started = _aware(image.pending_since) or _aware(image.created_at) or now
    if (now - started).total_seconds() > policy.window:
        _fail(image, stage, f"gave up after retrying for {policy.window / 3600:g} h: {error}")
        return None
    image.failures = (image.failures or 0) + 1
    image.error = f"{stage}: {error} (retry {image.failures})"[:2000]
    delay = policy.backoff(image.failures)
    if delay <= queue_max_countdown:
        image.due_at = now + timedelta(seconds=delay + policy.lease)
        return delay
    image.due_at = now + timedelta(seconds=delay)
    return None


@dataclass(frozen=True)
class Redrive:
    image_id: int
    album_id: str
    metadata: bool
    thumbnails: bool


def claim_due(session: Session, policy: RetryPolicy, limit: int = 500) -> list[Redrive]:
    """Images whose pending work is overdue: each gets a new lease and is returned for its tasks
    to be sent again; those past the retry window fail with the last reason instead.
    ``SKIP LOCKED``: two heal runs on two hosts take different rows (PostgreSQL)."""
    now = utcnow()
    images = session.scalars(
        select(Image)
        .where(Image.due_at.is_not(None), Image.due_at <= now)
        .order_by(Image.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    out: list[Redrive] = []
    for image in images:
        if image.deleted_at is not None or not _pending(image):
            image.due_at = None
            continue
        started = _aware(image.pending_since) or _aware(image.created_at) or now
        if (now - started).total_seconds() > policy.window:
            reason = (image.error or "no worker finished it").split(": ", 1)[-1]
            for stage in STAGES:
                if getattr(image, f"{stage}_status") == STAGE_PENDING:
                    _fail(image, stage, f"gave up after {policy.window / 3600:g} h: {reason}")
            continue
        image.attempts = (image.attempts or 0) + 1
        image.due_at = now + timedelta(seconds=policy.lease_for(image.attempts))
        out.append(Redrive(image.id, image.album_id, image.metadata_status == STAGE_PENDING,
                           image.thumbnails_status == STAGE_PENDING))
    return out


def _waiting_out_a_backoff() -> Any:
    return (Image.failures > 0) & Image.due_at.is_not(None) & Image.deleted_at.is_(None)


def make_backoffs_due(session: Session) -> int:
    """Cloudinary works again after an outage: every stage waiting out a retry pause is due now."""
    now = utcnow()
    result = session.execute(update(Image).where(_waiting_out_a_backoff(), Image.due_at > now).values(due_at=now))
    return result.rowcount or 0


def probe_backoff(session: Session, within: float) -> int | None:
    """Cloudinary has been failing every call for a while: unless some stage's retry is due
    within ``within`` seconds anyway, make the one due soonest due now, so that one call per
    heal run finds out whether the outage is over. Returns its image id, or None."""
    now = utcnow()
    soonest = session.scalars(
        select(Image).where(_waiting_out_a_backoff()).order_by(Image.due_at).limit(1).with_for_update(skip_locked=True)
    ).first()
    if soonest is None or _aware(soonest.due_at) <= now + timedelta(seconds=within):
        return None
    soonest.due_at = now
    return soonest.id


def make_all_due(session: Session) -> int:
    """The broker lost its messages: every pending stage is due now."""
    result = session.execute(
        update(Image).where(Image.due_at.is_not(None), Image.deleted_at.is_(None)).values(due_at=utcnow())
    )
    return result.rowcount or 0


def recount(session: Session, album_id: str, thumb_size: tuple[int, int]) -> Album | None:
    """``images_count`` and the cover from the database: exact whatever ran before."""
    album = session.get(Album, album_id, with_for_update=True)
    if album is None:
        return None
    album.counted_at = utcnow()
    live = (Image.album_id == album_id) & Image.deleted_at.is_(None)
    album.images_count = session.scalar(select(func.count()).select_from(Image).where(live)) or 0
    ready = session.scalars(
        select(Image)
        .where(live, Image.metadata_status == STAGE_DONE, Image.thumbnails_status == STAGE_DONE)
        .order_by(Image.created_at.desc(), Image.id.desc())
        .limit(COVER_SIZE)
    ).all()
    album.thumbnails = [
        {"public_id": img.public_id, "url": img.thumbnail_url, "width": thumb_size[0], "height": thumb_size[1]}
        for img in ready
    ]
    return album


def known_public_ids(session: Session, album_id: str, public_ids: Iterable[str]) -> set[str]:
    ids = list(public_ids)
    if not ids:
        return set()
    # Deleted images count as known: reconciling must not bring a deleted photo back.
    return set(session.scalars(select(Image.public_id).where(Image.public_id.in_(ids))).all())


def mark_deleted(session: Session, album_id: str, public_ids: Iterable[str]) -> list[int]:
    """Soft-delete the album's images with these public ids; returns their ids."""
    ids = list(public_ids)
    if not ids:
        return []
    images = session.scalars(
        select(Image).where(Image.album_id == album_id, Image.public_id.in_(ids), Image.deleted_at.is_(None))
    ).all()
    for image in images:
        image.deleted_at = utcnow()
    removed = [image.id for image in images]
    duplicates.forget(session, album_id, removed)
    return removed


def albums_needing_recount(session: Session, changed_since: datetime, margin: float = 5.0) -> list[str]:
    """Albums with an image changed after their last recount read (less ``margin`` for clocks
    that differ between hosts): their recount was lost or has not run yet. Only images changed
    since ``changed_since`` are looked at (an index range), so the cost follows the changes."""
    latest = session.execute(
        select(Image.album_id, func.max(Image.updated_at))
        .where(Image.updated_at >= changed_since)
        .group_by(Image.album_id)
    ).all()
    if not latest:
        return []
    counted = dict(session.execute(
        select(Album.id, Album.counted_at).where(Album.id.in_([album_id for album_id, _ in latest]))
    ).all())
    stale = []
    for album_id, changed in latest:
        if album_id not in counted:
            continue
        last = _aware(counted[album_id])
        if last is None or _aware(changed) > last - timedelta(seconds=margin):
            stale.append(album_id)
    return stale


@dataclass(frozen=True)
class ReconcileTarget:
    album_id: str
    full: bool


def albums_to_reconcile(session: Session, settings: Settings, everything_active: bool = False,
                        limit: int = 200) -> list[ReconcileTarget]:
    """Albums owed a reconcile: one was asked for (``upload_done``) and no complete run started
    after the request; or the album's forms went out recently and its last listing is older than
    ``reconcile_interval`` (lost webhooks of a client that never says upload_done again); or,
    after a broker loss, every such active album. A full walk when the last is older than
    ``full_reconcile_interval``; otherwise the incremental one."""
    now = utcnow()
    active_since = now - timedelta(seconds=settings.active_album_window)
    listed_before = now - timedelta(seconds=settings.reconcile_interval)
    uncovered = Album.reconcile_requested_at.is_not(None) & (
        Album.last_reconciled_at.is_(None) | (Album.reconcile_requested_at > Album.last_reconciled_at))
    active = Album.form_issued_at.is_not(None) & (Album.form_issued_at >= active_since)
    if not everything_active:
        active = active & (Album.last_reconciled_at.is_(None) | (Album.last_reconciled_at < listed_before))
    albums = session.scalars(select(Album).where(uncovered | active).order_by(Album.id).limit(limit)).all()
    full_before = now - timedelta(seconds=settings.full_reconcile_interval)
    return [ReconcileTarget(a.id, a.reconcile_watermark is None or _aware(a.full_reconciled_at) is None
                            or _aware(a.full_reconciled_at) < full_before) for a in albums]


def request_reconcile(session: Session, album_id: str) -> None:
    """Record that the album is owed a reconcile (the heal task sees to it if no message does)."""
    album = session.get(Album, album_id)
    if album is not None:
        album.reconcile_requested_at = utcnow()


def form_issued(album: Album, min_interval: float = 60.0) -> bool:
    """Note that an upload form went out; written at most once a minute per album (a read of
    the album by its uploaders must not become a write each time). True when it wrote."""
    now = utcnow()
    last = _aware(album.form_issued_at)
    if last is not None and (now - last).total_seconds() < min_interval:
        return False
    album.form_issued_at = now
    return True


def created_at_of(resource: dict[str, Any]) -> datetime | None:
    return _parse_time(resource.get("created_at"))


def listing_reached_watermark(album: Album, resources: list[dict[str, Any]], overlap: float) -> bool:
    """An incremental reconcile lists newest first and stops after the page whose oldest photo
    is older than the last watermark less ``overlap`` (uploads the listing showed late)."""
    watermark = _aware(album.reconcile_watermark)
    if watermark is None or not resources:
        return watermark is not None
    times = [t for t in (created_at_of(r) for r in resources) if t is not None]
    return bool(times) and min(times) < watermark - timedelta(seconds=overlap)


#: A stored reconcile progress older than this is abandoned and the listing starts afresh.
RECONCILE_PROGRESS_MAX_AGE = timedelta(days=1)


@dataclass(frozen=True)
class ReconcileProgress:
    started: datetime
    cursor: str | None = None
    newest: datetime | None = None
    full: bool = False
    #: The listing under way: Cloudinary lists one resource type per call, images first.
    resource_type: str = RESOURCE_IMAGE

    def after(self, resources: list[dict[str, Any]], next_cursor: str | None) -> "ReconcileProgress":
        """The progress once a page is done: the next cursor, the newest photo seen so far."""
        times = [t for t in (created_at_of(r) for r in resources) if t is not None]
        if self.newest is not None:
            times.append(self.newest)
        return replace(self, cursor=next_cursor or None, newest=max(times) if times else None)

    def to_json(self) -> dict[str, Any]:
        return {"started": self.started.isoformat(), "cursor": self.cursor,
                "newest": self.newest.isoformat() if self.newest else None, "full": self.full,
                "resource_type": self.resource_type}

    def next_listing(self, album: Album | None) -> "ReconcileProgress | None":
        """Once a listing is done: the videos' listing when the images' is done and the album
        holds or expects videos (one more Admin call, spent only on such albums), else None."""
        if self.resource_type == RESOURCE_IMAGE and album is not None and album.expects_videos:
            return replace(self, resource_type=RESOURCE_VIDEO, cursor=None)
        return None


def reconcile_progress(album: Album, full: bool) -> ReconcileProgress:
    """Where the album's reconcile stands: the stored progress of a run under way (a full
    request turns it into a full run from the top), else a new run starting now."""
    stored = album.reconcile_progress or {}
    started = _parse_time(stored.get("started"))
    if started is not None and utcnow() - started < RECONCILE_PROGRESS_MAX_AGE and (stored.get("full") or not full):
        kind = stored.get("resource_type") if stored.get("resource_type") in RESOURCE_TYPES else RESOURCE_IMAGE
        return ReconcileProgress(started, stored.get("cursor"), _parse_time(stored.get("newest")), bool(stored.get("full")),
                                 kind)
    return ReconcileProgress(utcnow(), full=full)


def save_reconcile_progress(session: Session, album_id: str, progress: ReconcileProgress) -> None:
    album = session.get(Album, album_id)
    if album is not None:
        album.reconcile_progress = progress.to_json()


def finish_reconcile(session: Session, album_id: str, progress: ReconcileProgress) -> bool:
    """A complete run: everything requested before it started is covered, and the watermark
    moves to the newest photo seen. True when another request came in meanwhile."""
    album = session.get(Album, album_id, with_for_update=True)
    if album is None:
        return False
    album.reconcile_progress = None
    album.last_reconciled_at = progress.started
    if progress.full:
        album.full_reconciled_at = progress.started
    if progress.newest is not None:
        current = _aware(album.reconcile_watermark)
        album.reconcile_watermark = progress.newest if current is None or progress.newest > current else current
    requested = _aware(album.reconcile_requested_at)
    return requested is not None and requested > progress.started


def undestroyed_images(session: Session, older_than: timedelta, limit: int = 500) -> list[int]:
    """Deleted images whose Cloudinary destroy has not succeeded for ``older_than``; retried
    until it does (a destroy is idempotent: Cloudinary answers "not found" the second time)."""
    cutoff = datetime.now(timezone.utc) - older_than
    return list(session.scalars(
        select(Image.id)
        .where(Image.deleted_at.is_not(None), Image.destroyed_at.is_(None), Image.deleted_at < cutoff)
        .order_by(Image.deleted_at)
        .limit(limit)
    ).all())


def status_counts(session: Session, album_id: str) -> dict[str, int]:
    """Images per status. One GROUP BY over the stage pairs: the upload page polls this every
    second, so it must not load every row of a large album."""
    counts = {"received": 0, "processing": 0, "ready": 0, "failed": 0}
    rows = session.execute(
        select(Image.metadata_status, Image.thumbnails_status, func.count())
        .where(Image.album_id == album_id, Image.deleted_at.is_(None))
        .group_by(Image.metadata_status, Image.thumbnails_status)
    ).all()
    for metadata_status, thumbnails_status, n in rows:
        status = image_status(metadata_status, thumbnails_status)
        counts[status] = counts.get(status, 0) + n
    return counts


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def duplicate_groups(images: list[Image], threshold: int) -> list[list[Image]]:
    """Groups of images whose pHashes lie within ``threshold`` bits of each other (single-link
    clusters via union-find: near-duplicates of near-duplicates share a group), by comparing
    every pair: quadratic, so the API answers from ``common.duplicates``' index instead; this is
    the reference its tests and bench/album_scale.py hold it to."""
    hashed = [img for img in images if img.phash]
    parent = list(range(len(hashed)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    values = []
    for img in hashed:
        try:
            values.append(int(img.phash or "", 16))
        except ValueError:
            values.append(None)
    for i in range(len(hashed)):
        for j in range(i + 1, len(hashed)):
            if values[i] is None or values[j] is None:
                continue
            if (values[i] ^ values[j]).bit_count() <= threshold:
                parent[root(i)] = root(j)
    groups: dict[int, list[Image]] = {}
    for i, img in enumerate(hashed):
        groups.setdefault(root(i), []).append(img)
    return [g for g in groups.values() if len(g) > 1]


REPROCESS_MODES = ("missing", "all")


def reset_for_reprocess(session: Session, album_id: str, mode: str,
                        policy: RetryPolicy = RetryPolicy()) -> list[tuple[int, bool, bool]]:
    """Put the album's images back in the pipeline: ``missing`` = stages not done (failed or
    pending), ``all`` = every stage again. Returns (image id, redo metadata, redo thumbnails).
    The reset is the intent: committed, it is carried out even if no message is ever sent."""
    now = utcnow()
    images = session.scalars(
        select(Image).where(Image.album_id == album_id, Image.deleted_at.is_(None)).order_by(Image.id)
    ).all()
    todo: list[tuple[int, bool, bool]] = []
    for image in images:
        redo_meta = mode == "all" or image.metadata_status != STAGE_DONE
        redo_thumbs = mode == "all" or image.thumbnails_status != STAGE_DONE
        if not (redo_meta or redo_thumbs):
            continue
        if redo_meta:
            image.metadata_status = STAGE_PENDING
        if redo_thumbs:
            image.thumbnails_status = STAGE_PENDING
        image.error = None
        image.attempts = image.failures = 0
        image.pending_since = now
        image.due_at = now + timedelta(seconds=policy.lease)
        todo.append((image.id, redo_meta, redo_thumbs))
    return todo
