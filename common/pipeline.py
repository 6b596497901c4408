"""The pipeline's logic as plain functions on a session: what the Celery tasks in
``tasks/pipeline.py`` call, and what the unit tests call directly.

Every function is idempotent: it computes what is missing and does nothing when run again.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.models import STAGE_DONE, STAGE_FAILED, STAGE_PENDING, Album, Image, image_status, utcnow

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


def has_analysis(resource: dict[str, Any]) -> bool:
    return all(key in resource for key in ANALYSIS_KEYS)


def _apply_resource(image: Image, resource: dict[str, Any]) -> bool:
    """Copy what the resource carries onto the image; true when it carried the analysis."""
    for field in ("asset_id", "version", "format", "width", "height", "bytes"):
        if resource.get(field) is not None:
            setattr(image, field, resource[field])
    if isinstance(resource.get("type"), str):
        image.type = resource["type"]
    if image.uploaded_at is None:
        image.uploaded_at = _parse_time(resource.get("created_at"))
    if not has_analysis(resource):
        return False
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


def find_image(session: Session, resource: dict[str, Any]) -> Image | None:
    conditions = []
    if resource.get("asset_id"):
        conditions.append(Image.asset_id == resource["asset_id"])
    if resource.get("public_id"):
        conditions.append(Image.public_id == resource["public_id"])
    if not conditions:
        return None
    return session.scalars(select(Image).where(or_(*conditions)).with_for_update()).first()


def ingest(session: Session, album_id: str, resource: dict[str, Any], uploaded_by: str | None, source: str = "webhook") -> IngestResult | None:
    """Upsert the image by ``asset_id``/``public_id``. Returns None for an unknown album or a
    resource without ``public_id`` (logged by the task, not retried: it cannot get better)."""
    public_id = resource.get("public_id")
    if not isinstance(public_id, str) or not public_id or session.get(Album, album_id) is None:
        return None
    image = find_image(session, resource)
    created = image is None
    if image is None:
        image = Image(album_id=album_id, public_id=public_id, uploaded_by=uploaded_by, source=source,
                      metadata_status=STAGE_PENDING, thumbnails_status=STAGE_PENDING, attempts=0)
        session.add(image)
    elif image.album_id != album_id:
        return None  # another album's photo: never move it
    had_metadata = image.metadata_status == STAGE_DONE
    if not had_metadata:
        _apply_resource(image, resource)
    try:
        session.flush()
    except IntegrityError:
        # A duplicate notification inserted the same photo concurrently: theirs stands.
        session.rollback()
        existing = find_image(session, resource)
        if existing is None:
            raise
        return IngestResult(existing.id, False, False, False)
    return IngestResult(
        image_id=image.id,
        created=created,
        needs_metadata=image.metadata_status != STAGE_DONE,
        needs_thumbnails=created and image.thumbnails_status != STAGE_DONE,
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
    image.error = None if image.thumbnails_status != STAGE_FAILED else image.error
    return image


def store_thumbnails(session: Session, image_id: int, thumbnail_url: str, preview_url: str, width: int, height: int) -> Image | None:
    image = session.get(Image, image_id)
    if image is None:
        return None
    image.thumbnail_url = thumbnail_url
    image.preview_url = preview_url
    image.thumbnails_status = STAGE_DONE
    return image


def mark_failed(session: Session, image_id: int, stage: str, error: str) -> None:
    image = session.get(Image, image_id)
    if image is None:
        return
    setattr(image, f"{stage}_status", STAGE_FAILED)
    image.error = f"{stage}: {error}"[:2000]


def recount(session: Session, album_id: str, thumb_size: tuple[int, int]) -> Album | None:
    """``images_count`` and the cover from the database: exact whatever ran before."""
    album = session.get(Album, album_id, with_for_update=True)
    if album is None:
        return None
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
    return [image.id for image in images]


def stuck_images(session: Session, older_than: timedelta, limit: int = 500) -> list[Image]:
    """Images with a stage still pending and untouched for ``older_than``."""
    cutoff = datetime.now(timezone.utc) - older_than
    return list(session.scalars(
        select(Image)
        .where(
            Image.deleted_at.is_(None),
            or_(Image.metadata_status == STAGE_PENDING, Image.thumbnails_status == STAGE_PENDING),
            Image.updated_at < cutoff,
        )
        .order_by(Image.updated_at)
        .limit(limit)
    ).all())


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
    clusters via union-find: near-duplicates of near-duplicates share a group)."""
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


def reset_for_reprocess(session: Session, album_id: str, mode: str) -> list[tuple[int, bool, bool]]:
    """Put the album's images back in the pipeline: ``missing`` = stages not done (failed or
    pending), ``all`` = every stage again. Returns (image id, redo metadata, redo thumbnails)."""
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
        image.attempts = 0
        todo.append((image.id, redo_meta, redo_thumbs))
    return todo
