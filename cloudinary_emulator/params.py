"""Reading and checking request parameters the way Cloudinary does, shared by every API surface."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from flask import request
from werkzeug.datastructures import FileStorage

from cloudinary_emulator.errors import CloudinaryError
from cloudinary_emulator.urls import DELIVERY_TYPES

# Characters Cloudinary refuses in a public_id (its upload reference), plus control characters.
FORBIDDEN_PUBLIC_ID_CHARS = frozenset("?&#\\%<>") | {chr(c) for c in range(32)} | {chr(127)}
MAX_PUBLIC_ID = 255
RESOURCE_TYPES = ("image", "video", "raw")
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
    """Cloudinary's public_id rules: a leading ``/`` is trimmed; no ``? & # \\ % < >``, no
    leading/trailing space or trailing ``/``, at most 255 characters. Empty folders and ``.``/``..``
    segments are refused too (URLs would resolve them away). Storage names are hashes, so no
    public_id reaches the file system either way."""
    public_id = public_id.lstrip("/")
    invalid = CloudinaryError(400, f"Invalid public_id {public_id!r}: it may not contain"
                                   " ? & # \\ % < >, nor start or end with a space or end with /")
    if not public_id or len(public_id) > MAX_PUBLIC_ID or public_id.endswith("/") \
            or public_id != public_id.strip(" ") or FORBIDDEN_PUBLIC_ID_CHARS & set(public_id):
        raise invalid
    if any(segment in ("", ".", "..") for segment in public_id.split("/")):
        raise invalid
    return public_id


def parse_context(value: Any) -> dict[str, str]:
    """``alt=x|caption=a\\|b`` (the SDK's ``encode_context``: ``=`` and ``|`` escaped with ``\\``)."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    pairs: dict[str, str] = {}
    for item in re.split(r"(?<!\\)\|", str(value or "")):
        if not item:
            continue
        key, sep, val = _split_pair(item)
        if not sep:
            raise CloudinaryError(400, f"Invalid context - {item}")
        pairs[_unescape(key)] = _unescape(val)
    return pairs


def _split_pair(item: str) -> tuple[str, str, str]:
    parts = re.split(r"(?<!\\)=", item, maxsplit=1)
    return (parts[0], "=", parts[1]) if len(parts) == 2 else (parts[0], "", "")


def _unescape(text: str) -> str:
    return text.replace("\\=", "=").replace("\\|", "|")


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
