"""Authentication (``Token token="..."`` or ``Bearer``) and per-album rights."""
from __future__ import annotations

import re
import time
from functools import wraps
from typing import Any, Callable, TypeVar

from flask import current_app, g, request

from common import tokens
from web.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])

_TOKEN_HEADER = re.compile(r'^Token\s+token="([^"]+)"\s*$')
_BEARER_HEADER = re.compile(r"^Bearer\s+(\S+)\s*$")
#: Album ids are short opaque strings (the seed's is ``00100000123BB25``).
ALBUM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CHALLENGE = {"WWW-Authenticate": 'Token realm="album-api", Bearer realm="album-api"'}


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, _CHALLENGE)


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise _unauthorized("Missing Authorization header: use 'Token token=\"<jwt>\"' or 'Bearer <jwt>'.")
    match = _TOKEN_HEADER.match(header) or _BEARER_HEADER.match(header)
    if not match:
        raise _unauthorized("Malformed Authorization header: use 'Token token=\"<jwt>\"' or 'Bearer <jwt>'.")
    return match.group(1)


def current_claims() -> dict[str, Any]:
    settings = current_app.config["SETTINGS"]
    try:
        claims = tokens.decode_session(bearer_token(), settings.jwt_secret)
    except tokens.TokenError as exc:
        raise _unauthorized(str(exc)) from None
    g.session_claims = claims
    return claims


def reissued_session(status: int) -> str | None:
    """The seed's ``X-token``: the request's session re-issued, on a successful answer only. An
    error (a 403 above all) hands out no fresh credential: a refused token stays as old as it was."""
    claims = g.get("session_claims")
    if claims is None or not 200 <= status < 300:
        return None
    settings = current_app.config["SETTINGS"]
    return tokens.reissue(claims, settings.jwt_secret, settings.token_ttl, now=int(time.time()))


def check_album_id(album_id: str) -> None:
    if not ALBUM_ID.match(album_id):
        raise ApiError(404, "album_not_found", "No such album.")


def album_access(ability: str | None = None) -> Callable[[F], F]:
    """Guard a view taking ``album_id``: any ability on the album, or ``ability`` when given.
    Sets ``g.claims`` and ``g.abilities``."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            claims = current_claims()
            album_id = kwargs["album_id"]
            check_album_id(album_id)
            granted = tokens.album_abilities(claims, album_id)
            if not granted:
                raise ApiError(403, "forbidden", f"This token grants no right on album {album_id}.")
            if ability is not None and ability not in granted:
                raise ApiError(403, "forbidden", f"This token has no '{ability}' right on album {album_id}.")
            g.claims = claims
            g.abilities = granted
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
