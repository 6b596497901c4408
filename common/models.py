"""SQLAlchemy 2.0 typed models: organizations, albums and their images."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, ForeignKeyConstraint, Index, Integer, SmallInteger, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    albums: Mapped[list[Album]] = relationship(back_populates="organization")


class Album(Base):
    __tablename__ = "albums"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    images_count: Mapped[int] = mapped_column(Integer, default=0)
    views_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Cover: the newest ready images, ``[{"public_id", "url", "width", "height"}]``.
    thumbnails: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: When the last complete reconcile *started* listing: anything requested before it is covered.
    last_reconciled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: A reconcile asked for (``upload_done``) and not yet covered by a complete one: the intent
    #: lives here, not in the queue, so a lost message or a Redis restart cannot drop it.
    reconcile_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Newest ``created_at`` (Cloudinary's clock) a complete reconcile saw: the next one lists
    #: newest first and stops a safety margin below it.
    reconcile_watermark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: When the last complete *full* walk of the album's tag started (a slow schedule repeats it).
    full_reconciled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: A reconcile under way: ``{"cursor", "started", "newest", "full"}`` after each page, so a run
    #: whose next message is lost, or that waits out the Admin budget, resumes where it was.
    reconcile_progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: Last time an upload form for the album went out: the heal task reconciles such albums
    #: after a broker loss, and the beat now and then (lost webhooks of clients gone quiet).
    form_issued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    #: When the last recount read the album: a change to an image after it needs another one.
    counted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The album's last change number: every write that changes what ``/images`` shows of one of
    #: its images takes the next ones (``common/changes.py``), the cursor of ``/changes``.
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: The album holds videos, or an uploader said a batch had some (``upload_done?videos=1``):
    #: only then does a reconcile spend a second Admin listing on the tag's videos.
    expects_videos: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    organization: Mapped[Organization] = relationship(back_populates="albums")


# Per-stage status values. ``metadata`` and ``thumbnails`` each move
# pending -> done | failed; the image is ``ready`` when both are done.
STAGE_PENDING = "pending"
STAGE_DONE = "done"
STAGE_FAILED = "failed"

# Cloudinary's resource types.
RESOURCE_IMAGE = "image"
RESOURCE_VIDEO = "video"
RESOURCE_RAW = "raw"
RESOURCE_TYPES = (RESOURCE_IMAGE, RESOURCE_VIDEO, RESOURCE_RAW)


def image_status(metadata_status: str, thumbnails_status: str, deleted: bool = False) -> str:
    """The image's one-word status from its stages (shared by the model and the album counts)."""
    if deleted:
        return "deleted"
    stages = (metadata_status, thumbnails_status)
    if STAGE_FAILED in stages:
        return "failed"
    if all(s == STAGE_DONE for s in stages):
        return "ready"
    if all(s == STAGE_PENDING for s in stages):
        return "received"
    return "processing"


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        Index("ix_images_album_created", "album_id", "created_at", "id"),
        # The heal task's two scans: work that is due, and what changed since the last recount.
        Index("ix_images_due_at", "due_at"),
        Index("ix_images_updated_at", "updated_at"),
        # /changes: an album's images changed after a change number.
        Index("ix_images_album_change", "album_id", "change_seq"),
        # Same bytes sent twice to one album: ingest looks the etag up among the album's images.
        Index("ix_images_album_etag", "album_id", "etag"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    album_id: Mapped[str] = mapped_column(ForeignKey("albums.id"), index=True)
    public_id: Mapped[str] = mapped_column(String(255), unique=True)
    asset_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    version: Mapped[int | None] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(20), default="authenticated")
    #: Cloudinary's resource type (image, video, raw): every call on the asset must name it.
    resource_type: Mapped[str] = mapped_column(String(16), default=RESOURCE_IMAGE, server_default=RESOURCE_IMAGE)
    #: Seconds, for videos.
    duration: Mapped[float | None] = mapped_column(Float)
    #: The name of the file as the uploader had it (without extension, as Cloudinary reports it).
    original_filename: Mapped[str | None] = mapped_column(String(255))
    #: MD5 of the bytes as Cloudinary reports it: the same file uploaded twice has the same etag.
    etag: Mapped[str | None] = mapped_column(String(64))
    #: Set on a second upload of the same bytes to an album: the image it repeats. Such an image
    #: is deleted on arrival (its asset destroyed) instead of counted twice.
    duplicate_of: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    format: Mapped[str | None] = mapped_column(String(16))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    faces: Mapped[list[Any] | None] = mapped_column(JSON)
    colors: Mapped[list[Any] | None] = mapped_column(JSON)
    predominant: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    phash: Mapped[str | None] = mapped_column(String(32))
    image_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    thumbnail_url: Mapped[str | None] = mapped_column(Text)
    preview_url: Mapped[str | None] = mapped_column(Text)
    metadata_status: Mapped[str] = mapped_column(String(16), default=STAGE_PENDING)
    thumbnails_status: Mapped[str] = mapped_column(String(16), default=STAGE_PENDING)
    #: Re-sends of the pending work by heal (a lease ran out: the message was lost, or the
    #: queue is long): each one's lease is longer.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Transient failures in a row since a stage last finished: drives the retry backoff. Not
    #: raised by re-sends, so a photo whose message a Redis restart lost starts its retries
    #: from the short pause.
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: While a stage is pending: when the heal task should look again if nothing finished it
    #: (the task's lease, or the end of a retry backoff). NULL once nothing is pending.
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: When the pending work began (upload or reprocess): transient failures are retried until
    #: ``RETRY_WINDOW`` after it, then the stage fails with the last reason.
    pending_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The last failure's reason: kept while retrying, and the reason a stage failed.
    error: Mapped[str | None] = mapped_column(Text)
    uploaded_by: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16), default="webhook")
    uploaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: When Cloudinary confirmed the deleted image's asset gone (the sweep retries until then).
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The album's change number of this image's last visible change (``common/changes.py``).
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    @property
    def status(self) -> str:
        """One word for the image: received, processing, ready, failed or deleted."""
        return image_status(self.metadata_status, self.thumbnails_status, self.deleted_at is not None)


class ViewFold(Base):
    """A batch of pending album views already added to ``albums.views_count``: written in the
    same transaction as the increments, so a batch is applied once even when the worker dies
    before it can drop the batch from Redis (``common/views.py``)."""

    __tablename__ = "view_folds"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    folded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ImageHash(Base):
    """An image's pHash as the duplicates index holds it (``common/duplicates.py``). A row exists
    for every live image with a valid pHash once the index task has run for it; the images of
    one hash value are found through (album, phash). The bands are the hash's (as in
    ``AlbumHash``); the lookup of near neighbours reads ``AlbumHash``'s, one row per distinct
    value (these stay as 0005 made them: dropping columns rebuilds the table on SQLite)."""

    __tablename__ = "image_hashes"
    # A value's images, smallest first (its first image is the value's node in the edges).
    __table_args__ = (Index("ix_image_hashes_album_phash", "album_id", "phash", "image_id"),)

    image_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    album_id: Mapped[str] = mapped_column(String(64))
    #: The pHash this row was made from (16 lowercase hex digits): the index reflects it.
    phash: Mapped[str] = mapped_column(String(16))
    band0: Mapped[int] = mapped_column(Integer)
    band1: Mapped[int] = mapped_column(Integer)
    band2: Mapped[int] = mapped_column(Integer)
    band3: Mapped[int] = mapped_column(Integer)


class AlbumHash(Base):
    """A distinct pHash value of an album's indexed images, however many images share it: the
    nodes the near-neighbour lookup and the edges are about, so that k identical hashes (a
    burst, blank photos) cost one node, not k. The hash cut into four 16-bit bands, each indexed
    with the album, so the near neighbours of a new value are found by equality lookups. A row
    exists exactly while some ``ImageHash`` row of the album has the value (an album's deletion
    takes its values, and they their edges)."""

    __tablename__ = "album_hashes"
    __table_args__ = tuple(Index(f"ix_album_hashes_band{n}", "album_id", f"band{n}") for n in range(4))

    album_id: Mapped[str] = mapped_column(String(64), ForeignKey("albums.id", ondelete="CASCADE"), primary_key=True)
    phash: Mapped[str] = mapped_column(String(16), primary_key=True)
    band0: Mapped[int] = mapped_column(Integer)
    band1: Mapped[int] = mapped_column(Integer)
    band2: Mapped[int] = mapped_column(Integer)
    band3: Mapped[int] = mapped_column(Integer)
    #: The value's smallest live image: what stands for the value in its edges, so that the
    #: groups are read from the edges alone for values of one image (most of them).
    image_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


class HashEdge(Base):
    """Two distinct pHash values of one album within the largest indexed threshold
    (``phash`` < ``other_phash``), or a value with itself at distance 0 while two or more images
    share it, each end with its value's first image (``AlbumHash.image_id``). The groups for a
    threshold are the connected components of the edges within it, with the other images of the
    values that have a self-edge, computed when asked."""

    __tablename__ = "hash_edges"
    __table_args__ = (
        # The endpoint's read (album, distance <= t) is answered from this index alone.
        Index("ix_hash_edges_album", "album_id", "distance", "image_id", "other_id", "phash"),
        Index("ix_hash_edges_other", "album_id", "other_phash"),
        # A value that leaves the album takes its edges.
        *(ForeignKeyConstraint(["album_id", end], ["album_hashes.album_id", "album_hashes.phash"], ondelete="CASCADE")
          for end in ("phash", "other_phash")),
    )

    album_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    phash: Mapped[str] = mapped_column(String(16), primary_key=True)
    other_phash: Mapped[str] = mapped_column(String(16), primary_key=True)
    distance: Mapped[int] = mapped_column(SmallInteger)
    #: The first images of ``phash`` and of ``other_phash`` (images are soft-deleted only, and
    #: the index re-points these when a first image leaves: no foreign key).
    image_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    other_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
