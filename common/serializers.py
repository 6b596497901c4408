"""The JSON shapes of the API. Key order is part of the contract (the seed), so these build
plain dicts in that order and Flask is told not to sort them."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from common.models import Album, Image


def album_json(album: Album, upload_form: dict[str, Any] | None, pending_views: int = 0) -> dict[str, Any]:
    """The album object of the seed's ``upload_done`` response, key for key. ``views_count`` is
    the database's plus the views not folded into it yet (``common/views.py``)."""
    return {
        "id": album.id,
        "public_id": album.id,
        "images_count": album.images_count,
        "views_count": album.views_count + pending_views,
        "upload_form": upload_form,
        "organization_id": album.organization_id,
        "thumbnails": list(album.thumbnails or []),
    }


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; they are stored as UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def image_json(image: Image) -> dict[str, Any]:
    return {
        "id": image.id,
        "public_id": image.public_id,
        "resource_type": image.resource_type,
        "original_filename": image.original_filename,
        "status": image.status,
        "stages": {"metadata": image.metadata_status, "thumbnails": image.thumbnails_status},
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "bytes": image.bytes,
        "duration": image.duration,
        "etag": image.etag,
        "created_at": iso(image.created_at),
        "faces": image.faces,
        "colors": image.colors,
        "predominant": image.predominant,
        "phash": image.phash,
        "image_metadata": image.image_metadata,
        "thumbnail_url": image.thumbnail_url,
        "preview_url": image.preview_url,
        "error": image.error,
    }
