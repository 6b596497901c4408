"""Reading and checking request parameters the way Cloudinary does, shared by every API surface."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from flask import request
from werkzeug.datastructures import FileStorage

from cloudinary_emulator.errors import CloudinaryError
from cloudinary_emulator.urls import DELIVERY_TYPES

# One path segment of a public_id: letters (Unicode too), digits and a few safe marks; no
# leading dot, so neither "." nor ".." nor hidden names can appear. Storage names are hashes,
# so this guards URLs and listings rather than the file system.
SEGMENT_RE = re.compile(r"^[\w\-@+=~,!()][\w\-@+=~,!(). ]*$")
MAX_PUBLIC_ID = 255
TRUE_VALUES = {"1", "true", "yes", "on"}


def is_true(value: Any) -> bool:
    return str(value).strip().lower() in TRUE_VALUES


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def form_params() -> tuple[dict[str, Any], FileStorage | None]:
    """The form as Cloudinary reads it: ``key[]`` fields become lists under ``key``."""
    form = request.form
    params: dict[str, Any] = {}
    for key in form.keys():
        if key.endswith("[]"):
            params[key[:-2]] = form.getlist(key)
        else:
            params[key] = form.get(key, "")
    return params, request.files.get("file")


def validate_public_id(public_id: str) -> str:
    """Reject ids that could escape a folder or break URLs; folders like ``album/p1`` pass."""
    if not public_id or len(public_id) > MAX_PUBLIC_ID or public_id.startswith("/") \
            or public_id.endswith("/") or "\\" in public_id:
        raise CloudinaryError(400, f"Invalid public_id {public_id!r}")
    for segment in public_id.split("/"):
        if not SEGMENT_RE.match(segment) or segment.endswith(" "):
            raise CloudinaryError(400, f"Invalid public_id {public_id!r}")
    return public_id


def validate_type(type_: str) -> str:
    if type_ not in DELIVERY_TYPES:
        raise CloudinaryError(400, f"Invalid type - {type_}")
    return type_


def parse_tags(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value or "").split(",")
    tags: list[str] = []
    for item in items:
        tag = str(item).strip()
        if tag and tag not in tags:
            if len(tag) > 255:
                raise CloudinaryError(400, "Tag is too long")
            tags.append(tag)
    return tags
