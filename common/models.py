"""SQLAlchemy 2.0 typed models: organizations, albums and their images."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
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
    last_reconciled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    organization: Mapped[Organization] = relationship(back_populates="albums")


# Per-stage status values. ``metadata`` and ``thumbnails`` each move
# pending -> done | failed; the image is ``ready`` when both are done.
STAGE_PENDING = "pending"
STAGE_DONE = "done"
STAGE_FAILED = "failed"


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
    __table_args__ = (Index("ix_images_album_created", "album_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    album_id: Mapped[str] = mapped_column(ForeignKey("albums.id"), index=True)
    public_id: Mapped[str] = mapped_column(String(255), unique=True)
    asset_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    version: Mapped[int | None] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(20), default="authenticated")
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
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    uploaded_by: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16), default="webhook")
    uploaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: When Cloudinary confirmed the deleted image's asset gone (the sweep retries until then).
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    @property
    def status(self) -> str:
        """One word for the image: received, processing, ready, failed or deleted."""
        return image_status(self.metadata_status, self.thumbnails_status, self.deleted_at is not None)
