"""Everything that talks to Cloudinary goes through here, on the official SDK.

The SDK does the signing, the URL building and the HTTP; this module adds what the product
needs around it: configuration from ``CLOUDINARY_URL``, the signed upload form, the
notification check in constant time, and the Admin API budget.
"""
from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import cloudinary
import cloudinary.api
import cloudinary.exceptions
import cloudinary.uploader
import cloudinary.utils

from common import tokens
from common.config import Settings
from common.coordination import admin_budget

#: Eager transformations made for every photo: a square, face-aware thumbnail and a bounded preview.
THUMBNAIL = {"crop": "thumb", "gravity": "faces", "width": 256, "height": 256, "format": "jpg"}
PREVIEW = {"crop": "limit", "width": 1280, "height": 1280, "format": "jpg"}
ASSET_TYPE = "authenticated"

_configured_url: str | None = None


class RateLimitedError(Exception):
    """The Admin API budget is spent; retry after ``wait`` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"Cloudinary Admin API rate limited for {wait:.0f}s")
        self.wait = wait


# Errors worth a retry: Cloudinary or the network failed, not the request.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (cloudinary.exceptions.GeneralError, ConnectionError, TimeoutError)


def _coerce(value: str) -> Any:
    return {"true": True, "false": False}.get(value.lower(), value)


def configure(url: str) -> None:
    """Configure the SDK from a ``cloudinary://key:secret@cloud?opt=...`` URL.

    The SDK parses such a URL itself only from the environment and keeps query values as
    strings (``secure=false`` would be truthy), so the URL is split here and booleans coerced."""
    global _configured_url
    if url == _configured_url:
        return
    parts = urlsplit(url)
    if parts.scheme != "cloudinary" or not parts.hostname:
        raise ValueError("CLOUDINARY_URL must look like cloudinary://API_KEY:API_SECRET@CLOUD_NAME")
    options: dict[str, Any] = {
        "cloud_name": parts.hostname,
        "api_key": unquote(parts.username or ""),
        "api_secret": unquote(parts.password or ""),
    }
    options.update({k: _coerce(v) for k, v in parse_qsl(parts.query)})
    cloudinary.reset_config()
    cloudinary.config(**options)
    _configured_url = url


def ensure_configured(settings: Settings) -> None:
    configure(settings.cloudinary_url)


def api_secret() -> str:
    return cloudinary.config().api_secret


def signature_algorithm() -> str:
    return cloudinary.config().signature_algorithm or cloudinary.utils.SIGNATURE_SHA1


def upload_form(
    *, album_id: str, organization_id: str, user_id: str, settings: Settings, now: int | None = None
) -> dict[str, Any]:
    """The signed form a client posts its photos with, straight to Cloudinary.

    The signed timestamp lies ``upload_form_ttl`` in the future on purpose: Cloudinary rejects
    only timestamps more than an hour *old*, so the form stays usable until ``expires_at``."""
    ensure_configured(settings)
    cfg = cloudinary.config()
    issued = int(time.time()) if now is None else now
    expires_at = issued + settings.upload_form_ttl
    token = tokens.notification_token(
        user_id, album_id, organization_id, settings.jwt_secret, settings.token_ttl, now=issued
    )
    params: dict[str, Any] = {
        "colors": 1,
        "faces": 1,
        "image_metadata": 1,
        "notification_url": f"{settings.public_url}/api/v1/cloudinary?token={token}",
        "phash": 1,
        "tags": album_id,
        "timestamp": expires_at,
        "type": ASSET_TYPE,
    }
    params["signature"] = cloudinary.utils.api_sign_request(
        params, cfg.api_secret,
        algorithm=cfg.signature_algorithm or cloudinary.utils.SIGNATURE_SHA1,
        signature_version=cfg.signature_version or 2,
    )
    params["api_key"] = cfg.api_key
    return {
        "url": cloudinary.utils.cloudinary_api_url("upload", resource_type="auto"),
        "expires_at": expires_at,
        "name": album_id,
        "id": f"{organization_id}-{album_id}",
        "params": params,
        "test_url": "/upload_test",
    }


def notification_signature_valid(raw_body: bytes, timestamp: str, signature: str, secret: str, algorithm: str) -> bool:
    """Cloudinary's notification signature: a plain digest of ``body + timestamp + secret``,
    over the raw bytes as received and compared in constant time. (The SDK's own
    ``verify_notification_signature`` compares with ``==`` and wants the body decoded to ``str``.)"""
    expected = hashlib.new(algorithm, raw_body + timestamp.encode() + secret.encode()).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


def _budget_from(response: Any) -> None:
    reset = getattr(response, "rate_limit_reset_at", None)
    remaining = getattr(response, "rate_limit_remaining", None)
    if reset is not None:
        admin_budget.record(remaining, float(calendar.timegm(reset)))


def _admin_call(reserve: int, call: Any, *args: Any, **kwargs: Any) -> Any:
    """One Admin API call under the shared budget: wait rather than spend below ``reserve``."""
    wait = admin_budget.acquire(reserve)
    if wait:
        raise RateLimitedError(wait)
    try:
        response = call(*args, **kwargs)
    except cloudinary.exceptions.RateLimited:
        # The SDK does not expose the 420's headers; the last answer's reset time stands,
        # else a minute's pause.
        admin_budget.exhausted(None)
        raise RateLimitedError(admin_budget.seconds_until_reset() or 60.0) from None
    _budget_from(response)
    return response


def fetch_resource(public_id: str, asset_type: str = ASSET_TYPE) -> dict[str, Any]:
    """Admin API: the resource with faces, colours, EXIF and pHash."""
    response = _admin_call(
        0, cloudinary.api.resource, public_id, type=asset_type,
        faces=True, colors=True, image_metadata=True, phash=True,
    )
    return dict(response)


def list_by_tag(tag: str, cursor: str | None, reserve: int) -> dict[str, Any]:
    """Admin API: one page (up to 500) of the resources with ``tag``."""
    options: dict[str, Any] = {"max_results": 500}
    if cursor:
        options["next_cursor"] = cursor
    return dict(_admin_call(reserve, cloudinary.api.resources_by_tag, tag, **options))


@dataclass(frozen=True)
class Derived:
    url: str
    width: int
    height: int


def delivery_url(public_id: str, transformation: dict[str, Any], asset_type: str = ASSET_TYPE) -> str:
    options = {k: v for k, v in transformation.items() if k != "format"}
    url, _ = cloudinary.utils.cloudinary_url(
        public_id, type=asset_type, sign_url=True, format=transformation.get("format"), transformation=[options]
    )
    return url


def generate_derived(public_id: str, asset_type: str = ASSET_TYPE) -> tuple[Derived, Derived]:
    """Upload API ``explicit`` (not rate-limited): make the thumbnail and the preview now, and
    return their signed delivery URLs (authenticated assets need signed URLs)."""
    result = cloudinary.uploader.explicit(public_id, type=asset_type, eager=[THUMBNAIL, PREVIEW])
    eager = result.get("eager") or []
    sizes = [(e.get("width"), e.get("height")) for e in eager]
    while len(sizes) < 2:
        sizes.append((None, None))
    thumb = Derived(delivery_url(public_id, THUMBNAIL, asset_type), sizes[0][0] or THUMBNAIL["width"], sizes[0][1] or THUMBNAIL["height"])
    preview = Derived(delivery_url(public_id, PREVIEW, asset_type), sizes[1][0] or 0, sizes[1][1] or 0)
    return thumb, preview


def destroy(public_id: str, asset_type: str = ASSET_TYPE) -> str:
    return cloudinary.uploader.destroy(public_id, type=asset_type, invalidate=True).get("result", "")
