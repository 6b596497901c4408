"""JWT sessions and per-album abilities (PyJWT, HS256 only).

A user session carries ``abilities: {album_id: {"Access": {ability: true}}}``. A notification
token (inside each upload form's ``notification_url``) carries the album and organization.

Both kinds share one secret, so each decoder also checks the token is of its own kind: a session
has ``abilities`` and no ``album_id``, a notification token the reverse. (A ``typ`` claim or an
``aud`` would say it more plainly, but the seed pins both tokens' bytes — the client's session
comes back as ``X-token`` and the notification token sits in the signed ``notification_url`` —
and forms already handed out must keep working: their claim sets are what tells them apart.)
"""
from __future__ import annotations

import re
import time
from functools import lru_cache
from typing import Any, Iterable, Mapping

import jwt

ALGORITHM = "HS256"
ABILITIES = ("image_upload", "read", "manage")
#: ``typ`` before ``alg`` as in the seed; PyJWT would otherwise sort the header keys.
_HEADERS = {"typ": "JWT", "alg": ALGORITHM}
_LEEWAY = 10


class TokenError(Exception):
    """A token that cannot be trusted; ``str()`` says why, for the 401 message."""


def encode(claims: Mapping[str, Any], secret: str) -> str:
    return jwt.encode(dict(claims), secret, algorithm=ALGORITHM, headers=_HEADERS, sort_headers=False)


def issue_session(
    user_id: str,
    abilities: Mapping[str, Iterable[str]],
    secret: str,
    ttl: int,
    now: int | None = None,
) -> str:
    """A user session: ``abilities`` maps album id -> ability names."""
    iat = int(time.time()) if now is None else now
    claims = {
        "exp": iat + ttl,
        "iat": iat,
        "user_id": user_id,
        "abilities": {album: {"Access": {name: True for name in names}} for album, names in abilities.items()},
    }
    return encode(claims, secret)


def reissue(claims: Mapping[str, Any], secret: str, ttl: int, now: int | None = None) -> str:
    """The same claims with a fresh ``iat``/``exp``, keeping ``exp`` and ``iat`` first as the seed does."""
    iat = int(time.time()) if now is None else now
    rest = {k: v for k, v in claims.items() if k not in ("exp", "iat")}
    return encode({"exp": iat + ttl, "iat": iat, **rest}, secret)


def notification_token(user_id: str, album_id: str, organization_id: str, secret: str, ttl: int, now: int | None = None) -> str:
    iat = int(time.time()) if now is None else now
    claims = {"exp": iat + ttl, "iat": iat, "user_id": user_id, "album_id": album_id, "organization_id": organization_id}
    return encode(claims, secret)


def decode_session(token: str, secret: str) -> dict[str, Any]:
    """Verify signature, algorithm and expiry of a user session."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], leeway=_LEEWAY,
            options={"require": ["exp", "iat"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token has expired") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise TokenError("token algorithm not allowed") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {exc}") from exc
    if not isinstance(claims.get("abilities"), dict) or "album_id" in claims:
        raise TokenError("invalid token: not a session token")
    return claims


@lru_cache(maxsize=1024)
def _verified_notification(token: str, secret: str) -> tuple[tuple[str, Any], ...]:
    """The claims of a notification token whose signature checks out (time is checked by the
    caller, on every use). Cached: all the photos of an upload form carry the same token, and
    PyJWT's check is a fifth of the webhook's own CPU per request (its base64 checks walk every
    character in Python; bench/webhook_ack.py). A token that fails is not cached (exceptions
    are not), so a forged one pays the full check every time."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM],
            options={"require": ["exp", "iat"], "verify_exp": False},
        )
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid notification token: {exc}") from exc
    return tuple(claims.items())


def decode_notification(token: str, secret: str, form_ttl: int, now: int | None = None) -> dict[str, Any]:
    """Verify a notification token. Its ``exp`` is a session's 4 h, but the upload form it sits
    in is good for ``form_ttl``: accept it until ``iat + form_ttl`` (the Cloudinary signature is
    what proves the call itself)."""
    claims = dict(_verified_notification(token, secret))
    current = int(time.time()) if now is None else now
    iat = claims.get("iat")
    if not isinstance(iat, int) or current > iat + form_ttl + _LEEWAY:
        raise TokenError("notification token has expired")
    if not isinstance(claims.get("album_id"), str) or "abilities" in claims:
        raise TokenError("invalid notification token: not a notification token")
    return claims


def album_abilities(claims: Mapping[str, Any], album_id: str) -> set[str]:
    """The abilities a session grants on one album."""
    entry = claims.get("abilities", {}).get(album_id)
    if not isinstance(entry, dict):
        return set()
    access = entry.get("Access")
    if not isinstance(access, dict):
        return set()
    return {name for name, granted in access.items() if name in ABILITIES and granted is True}


#: Credentials as they appear in a log line: a ``token=`` query value (the webhook's
#: notification token, the upload page's session), an ``Authorization`` value, and any JWT
#: wherever it sits (a Referer, a percent-encoded URL, an exception message).
_CREDENTIALS = re.compile(
    r"""(?P<query>token=)(?P<quote>"?)[^&\s"';,]+"""
    r"|(?P<scheme>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
    re.IGNORECASE,
)


def _redacted(match: re.Match[str]) -> str:
    if match.group("query"):
        return f"{match.group('query')}{match.group('quote')}[redacted]"
    if match.group("scheme"):
        return f"{match.group('scheme')}[redacted]"
    return "[redacted-jwt]"


def redact(text: str) -> str:
    """``text`` with every credential replaced: for log lines, never for anything parsed."""
    return _CREDENTIALS.sub(_redacted, text)
