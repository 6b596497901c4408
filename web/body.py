"""Request bodies, read and parsed within bounds: every endpoint that reads a body goes through here.

- Size: at most ``MAX_BODY`` bytes, whether the client sent ``Content-Length`` (refused before
  reading, in ``web.create_app``) or a chunked body (refused here, once the limit is passed) -> 413.
- JSON: UTF-8, nested at most ``MAX_JSON_DEPTH`` deep -> else 400 ``invalid_json``. The stdlib
  parser recurses once per level and raises ``RecursionError`` near 1,000 levels; anything we
  later serialise again (Celery's publish, the logs) would recurse as deep. So depth is bounded
  before the one parse, by a cheap scan at C speed: no second parse, and no scan at all for a
  body with fewer brackets than the limit (bench/json_bound.py measures both).
"""
from __future__ import annotations

import json
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from web.errors import ApiError

#: Requests are small JSON or empty (a Cloudinary notification is a few KiB).
MAX_BODY = 1024 * 1024
#: Cloudinary's notifications nest 4 deep (``predominant.google[i][j]``); 64 leaves room, and
#: most have fewer brackets than that, so their depth needs no scan at all.
MAX_JSON_DEPTH = 64

#: ``translate`` tables: keep brackets and quotes, with objects and arrays alike (``{}`` -> ``[]``).
_BRACKETS_AND_QUOTES = bytes.maketrans(b"{}", b"[]")
_OTHER_BYTES = bytes(b for b in range(256) if b not in b'[]{}"')


def read_body() -> bytes:
    """The request body, at most ``MAX_BODY`` bytes; 413 beyond (chunked bodies included)."""
    try:
        # Werkzeug bounds the stream at MAX_CONTENT_LENGTH (app config): reading past it raises.
        raw = request.stream.read(MAX_BODY + 1)
        if len(raw) >= MAX_BODY and request.stream.read(1):
            raise RequestEntityTooLarge()
    except RequestEntityTooLarge:
        raise ApiError(413, "payload_too_large", f"The body is over {MAX_BODY} bytes.") from None
    return raw


def nesting_within(raw: bytes, limit: int) -> bool:
    """True when the JSON text ``raw`` (UTF-8) nests at most ``limit`` arrays/objects deep and
    its brackets balance. Brackets inside strings don't count.

    All at C speed, on shrinking bytes: escaped backslashes and quotes are dropped (they are
    string content), every byte but brackets and quotes is deleted, what lies between a pair
    of quotes (a string) is dropped; then each round deletes every innermost ``[]`` pair, i.e.
    one level, so balanced brackets ``limit`` deep are gone after ``limit`` rounds. (Invalid
    JSON may be misjudged, and then fails to parse: ``parse_json`` catches ``RecursionError``.)"""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return True  # cannot nest deeper than it has openers (a stray closer is json.loads' business)
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = b"".join(raw.translate(_BRACKETS_AND_QUOTES, _OTHER_BYTES).split(b'"')[::2])
    for _ in range(limit):
        if not skeleton:
            return True
        shorter = skeleton.replace(b"[]", b"")
        if len(shorter) == len(skeleton):
            return False  # unbalanced: not JSON at all
        skeleton = shorter
    return not skeleton


def parse_json(raw: bytes) -> Any:
    """Parse a JSON body within the depth bound; 400 ``invalid_json`` otherwise."""
    try:
        # UTF-8 only (RFC 8259 §8.1): the byte scan below relies on ASCII bytes being ASCII.
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "The body must be UTF-8 JSON.") from None
    if not nesting_within(raw, MAX_JSON_DEPTH):
        raise ApiError(400, "invalid_json", f"The body is not JSON nested at most {MAX_JSON_DEPTH} levels deep.")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None


def json_object(raw: bytes, hint: str = "a JSON object") -> dict[str, Any]:
    """``parse_json`` for bodies that must be an object."""
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", f"The body must be {hint}.")
    return value
