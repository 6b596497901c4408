"""Bulk seeding, a test aid and not Cloudinary behaviour: many assets sharing one stored image.

Benches at scale (a 50,000-photo album's tag, say) need that many assets listed by the Admin API
without uploading and analysing that many photos. ``seed`` analyses one image once, then writes
``count`` rows in one transaction that all point at the same stored file; each gets its own
public_id, asset_id, version and ``created_at`` (spaced ``interval`` seconds apart, oldest first),
so listings, ``resource``, delivery, tags and deletion treat them like uploaded assets.
"""
from __future__ import annotations

import io
import secrets
import time
from dataclasses import replace
from typing import Any, Iterator

from PIL import Image

from cloudinary_emulator.analysis import analyse
from cloudinary_emulator.params import iso_utc, parse_tags, validate_public_id, validate_type
from cloudinary_emulator.storage import Asset, Storage, storage_key

MAX_SEED = 1_000_000


class SeedError(ValueError):
    """A seeding request with a wrong value."""


def default_image() -> bytes:
    """A small generated JPEG (a gradient), so a seed needs no fixture."""
    image = Image.linear_gradient("L").resize((64, 64)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def seed(storage: Storage, *, count: int, tags: list[str] | str = (), prefix: str = "seed/",
         type_: str = "upload", start: float | None = None, interval: float = 1.0,
         data: bytes | None = None) -> dict[str, Any]:
    """Write ``count`` assets ``<prefix><n>`` (n from 0), all tagged ``tags``; see the module doc.

    ``start`` is the first asset's creation time (Unix seconds; default: ``count * interval``
    seconds ago, so the newest is about now).
    """
    if not isinstance(count, int) or not 1 <= count <= MAX_SEED:
        raise SeedError(f"count must be an integer from 1 to {MAX_SEED}")
    if interval < 0:
        raise SeedError("interval must not be negative")
    type_ = validate_type(type_)
    tag_list = parse_tags(tags)
    data = data if data is not None else default_image()
    info = analyse(data)
    file_name = "seed-" + storage_key("seed", info.etag) + "." + info.format
    first = time.time() - count * interval if start is None else float(start)
    validate_public_id(f"{prefix}{count - 1}")

    def assets() -> Iterator[Asset]:
        for n in range(count):
            created = first + n * interval
            yield Asset(type=type_, public_id=f"{prefix}{n}", asset_id=secrets.token_hex(16),
                        version=int(created), version_id=secrets.token_hex(16),
                        created_at=iso_utc(created), original_filename=f"seed{n}",
                        file_name=file_name, info=replace(info), tags=list(tag_list))

    written = storage.put_many(assets(), data, file_name)
    return {"seeded": written, "first": f"{prefix}0", "last": f"{prefix}{count - 1}",
            "created_at_first": iso_utc(first),
            "created_at_last": iso_utc(first + (count - 1) * interval)}
