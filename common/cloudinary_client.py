"""Everything that talks to Cloudinary goes through here, on the official SDK.

The SDK does the signing, the URL building and the HTTP; this module adds what the product
needs around it: configuration from ``CLOUDINARY_URL``, the signed upload form, the
notification check in constant time, and the Admin API budget.
"""
from __future__ import annotations

import calendar
import email.utils
import hashlib
import hmac
import random
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import cloudinary
import cloudinary.api
import cloudinary.api_client.call_api
import cloudinary.exceptions
import cloudinary.uploader
import cloudinary.utils

from common import tokens
from common.config import Settings
from common.coordination import admin_budget, cloudinary_outage

#: Eager transformations made for every photo: a square, face-aware thumbnail and a bounded preview.
THUMBNAIL = {"crop": "thumb", "gravity": "faces", "width": 256, "height": 256, "format": "jpg"}
PREVIEW = {"crop": "limit", "width": 1280, "height": 1280, "format": "jpg"}
#: For a video: a square poster (the frame Cloudinary picks, ``so_auto``, as a JPEG) and a
#: bounded MP4 preview that every browser plays.
VIDEO_POSTER = {"crop": "fill", "width": 256, "height": 256, "start_offset": "auto", "format": "jpg"}
VIDEO_PREVIEW = {"crop": "limit", "width": 1280, "height": 1280, "format": "mp4"}
ASSET_TYPE = "authenticated"
IMAGE, VIDEO = "image", "video"


def derived_transformations(resource_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(thumbnail, preview) transformations for an asset of ``resource_type``."""
    return (VIDEO_POSTER, VIDEO_PREVIEW) if resource_type == VIDEO else (THUMBNAIL, PREVIEW)
#: Seconds any Cloudinary call may take (the SDK has no default: a hung call would hold a worker
#: thread forever). Well below the broker's visibility timeout. ``CLOUDINARY_CALL_TIMEOUT``
#: (``Settings.cloudinary_call_timeout``) sets it when the SDK is configured.
CALL_TIMEOUT: float = 30.0

_configured_url: str | None = None
#: Connections kept alive per Cloudinary host (``size_http_pool``); the io worker sets its concurrency.
_http_pool_size = 10


class RateLimitedError(Exception):
    """The Admin API budget is spent; retry after ``wait`` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"Cloudinary Admin API rate limited for {wait:.0f}s")
        self.wait = wait

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery pickles a task's exception; the default would call __init__ with the message.
        return (type(self), (self.wait,))


class PermanentError(Exception):
    """Cloudinary says the request cannot succeed (not found, invalid image): don't retry."""


class TransientError(Exception):
    """Cloudinary or the network failed, not the request: worth retrying."""


#: SDK errors that no retry can mend. Everything else the SDK or the network raises is
#: transient: a 5xx, a 502 from a proxy (the Admin API raises a bare ``Exception`` for
#: statuses it does not know), a timeout, a refused connection, wrong credentials an operator
#: may fix, a 403 from an account limit.
_PERMANENT = (cloudinary.exceptions.NotFound, cloudinary.exceptions.BadRequest)


def _call(call: Any, *args: Any, **kwargs: Any) -> Any:
    """One SDK call, its failures sorted into permanent and transient (both pickle cleanly,
    with the reason as their message)."""
    try:
        return call(*args, **kwargs)
    except _PERMANENT as exc:
        raise PermanentError(str(exc)) from None
    except cloudinary.exceptions.RateLimited:
        raise
    except Exception as exc:  # noqa: BLE001 - see _PERMANENT: the rest is worth a retry
        raise TransientError(f"{type(exc).__name__}: {exc}"[:500]) from None


class _RateLimitHeaders(threading.local):
    """The rate-limit headers of this thread's last Admin API answer."""

    remaining: int | None = None
    reset_at: float | None = None


_last_admin_answer = _RateLimitHeaders()


class _HeaderRecordingPool:
    """The SDK's Admin API connection pool, noting the rate-limit headers of every answer: on a
    420 the SDK raises ``RateLimited`` and drops the headers, and the reset time in them is what
    a wait must last (the SDK has no hook for it, hence this thin wrapper)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def request(self, *args: Any, **kwargs: Any) -> Any:
        _last_admin_answer.remaining = _last_admin_answer.reset_at = None
        response = self._pool.request(*args, **kwargs)
        headers = getattr(response, "headers", None) or {}
        reset = headers.get("x-featureratelimit-reset")
        parsed = email.utils.parsedate_to_datetime(reset) if reset else None
        _last_admin_answer.reset_at = parsed.timestamp() if parsed is not None else None
        remaining = headers.get("x-featureratelimit-remaining")
        _last_admin_answer.remaining = int(remaining) if remaining and remaining.isdigit() else None
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def _install_header_recording() -> None:
    module = cloudinary.api_client.call_api
    if not isinstance(module._http, _HeaderRecordingPool):
        module._http = _HeaderRecordingPool(module._http)


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
    options.setdefault("timeout", CALL_TIMEOUT)  # read by the Admin API calls
    cloudinary.reset_config()
    cloudinary.config(**options)
    _install_header_recording()
    _configured_url = url
    size_http_pool(_http_pool_size)  # built from this config (a proxy, keep-alive), as the SDK would


def size_http_pool(connections: int) -> None:
    """One HTTP pool for every SDK call of this process, keeping ``connections`` connections
    per host alive: as many as the threads calling Cloudinary at once (``worker/signals.py``
    gives the worker's concurrency), so none is discarded and opened again.

    The SDK builds its pools at import, one for the Upload API and one for the Admin API, each
    keeping a single connection per host: under 16 threads, every burst ends in "Connection
    pool is full, discarding connection" and re-opens them (a TLS handshake each with the real
    service). Its own connector factory is used, with only ``maxsize`` added; urllib3 opens
    connections on demand, so a large pool costs nothing until it is used."""
    global _http_pool_size
    _http_pool_size = max(1, connections)
    connector = cloudinary.utils.get_http_connector(
        cloudinary.config(), {**cloudinary.CERT_KWARGS, "maxsize": _http_pool_size}
    )
    cloudinary.uploader._http = connector  # both modules look ``_http`` up on every call
    cloudinary.api_client.call_api._http = connector
    _install_header_recording()  # the Admin API's answers still pass the rate-limit recorder


def ensure_configured(settings: Settings) -> None:
    global CALL_TIMEOUT
    if settings.cloudinary_call_timeout != CALL_TIMEOUT:
        CALL_TIMEOUT = settings.cloudinary_call_timeout
        cloudinary.config(timeout=CALL_TIMEOUT)  # the Admin API calls read it there
    configure(settings.cloudinary_url)


def api_secret() -> str:
    return cloudinary.config().api_secret


def signature_algorithm() -> str:
    return cloudinary.config().signature_algorithm or cloudinary.utils.SIGNATURE_SHA1


def notification_url(user_id: str, album_id: str, organization_id: str, settings: Settings,
                     now: int | None = None) -> str:
    """Our webhook's address for the album's notifications, with a notification token."""
    token = tokens.notification_token(user_id, album_id, organization_id, settings.jwt_secret, settings.token_ttl, now=now)
    return f"{settings.public_url}/api/v1/cloudinary?token={token}"


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
    params: dict[str, Any] = {
        "colors": 1,
        "faces": 1,
        "image_metadata": 1,
        "notification_url": notification_url(user_id, album_id, organization_id, settings, now=issued),
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


#: Upload API calls (``explicit``, ``destroy``: idempotent, and not charged to the Admin
#: budget) that fail fast and transiently (a 5xx, a refused connection) are tried once more
#: within the task, a fraction of a second later: a sporadic 5xx then costs half a second
#: rather than a round of the stage's backoff. Not a call that failed slowly (a timeout: the
#: task has waited long enough), nor an Admin API call (each try spends the hourly budget).
UPLOAD_API_RETRY_PAUSE = 0.5
UPLOAD_API_FAST_FAILURE = 5.0


def _upload_api_call(call: Any, *args: Any, **kwargs: Any) -> Any:
    started = time.monotonic()
    try:
        return _reporting_outcome(call, *args, **kwargs)
    except TransientError:
        if time.monotonic() - started > UPLOAD_API_FAST_FAILURE:
            raise
    time.sleep(UPLOAD_API_RETRY_PAUSE * random.uniform(0.5, 1.0))
    return _reporting_outcome(call, *args, **kwargs)


def _reporting_outcome(call: Any, *args: Any, **kwargs: Any) -> Any:
    """The call, its outcome told to ``cloudinary_outage`` (a permanent error is an answer:
    Cloudinary works)."""
    try:
        result = _call(call, *args, **kwargs)
    except TransientError:
        cloudinary_outage.failed()
        raise
    except PermanentError:
        cloudinary_outage.succeeded()
        raise
    cloudinary_outage.succeeded()
    return result


def _budget_from(response: Any) -> None:
    reset = getattr(response, "rate_limit_reset_at", None)
    remaining = getattr(response, "rate_limit_remaining", None)
    if reset is not None:
        admin_budget.record(remaining, float(calendar.timegm(reset)), getattr(response, "rate_limit_allowed", None))


def _admin_call(reserve: int, call: Any, *args: Any, **kwargs: Any) -> Any:
    """One Admin API call under the shared budget: wait rather than spend below ``reserve``."""
    wait = admin_budget.acquire(reserve)
    if wait:
        raise RateLimitedError(wait)
    try:
        response = _call(call, *args, **kwargs)
    except cloudinary.exceptions.RateLimited:
        # The answer's headers say when the window resets (see _HeaderRecordingPool).
        raise RateLimitedError(admin_budget.exhausted(_last_admin_answer.reset_at)) from None
    except (PermanentError, TransientError):
        admin_budget.release_probe()
        raise
    _budget_from(response)
    return response


def fetch_analysis(public_id: str, asset_type: str = ASSET_TYPE, resource_type: str = IMAGE) -> dict[str, Any]:
    """Faces, colours, EXIF and pHash of a stored photo, through the Upload API's ``explicit``:
    Cloudinary documents it for data extraction on uploaded assets and does not rate-limit it,
    unlike the Admin API's ``resource`` (a budget of a few hundred calls an hour). A video's
    answer carries its duration and codecs; Cloudinary has no face, colour or pHash for it."""
    analysis = {"faces": True, "colors": True, "image_metadata": True, "phash": True} if resource_type == IMAGE else {}
    return dict(_upload_api_call(cloudinary.uploader.explicit, public_id, type=asset_type,
                                 resource_type=resource_type, timeout=CALL_TIMEOUT, **analysis))


def list_by_tag(tag: str, cursor: str | None, reserve: int, direction: str = "desc",
                resource_type: str = IMAGE) -> dict[str, Any]:
    """Admin API: one page (up to 500) of the ``resource_type`` assets with ``tag``, newest first
    by default (Cloudinary lists one resource type per call)."""
    options: dict[str, Any] = {"max_results": 500, "direction": direction, "resource_type": resource_type}
    if cursor:
        options["next_cursor"] = cursor
    return dict(_admin_call(reserve, cloudinary.api.resources_by_tag, tag, **options))


@dataclass(frozen=True)
class Derived:
    url: str
    width: int
    height: int


@lru_cache(maxsize=64)
def _transformation_text(items: tuple[tuple[str, Any], ...], eager: bool = False) -> str:
    """The SDK's text for a transformation (``c_thumb,g_faces,h_256,w_256``; as an eager entry,
    with ``/<format>``). The same for every photo: built once, since building it was about
    300 of the 380 µs the SDK took for a signed delivery URL."""
    options = dict(items)
    if eager:
        return str(cloudinary.utils.build_single_eager(options))
    return str(cloudinary.utils.generate_transformation_string(**options)[0])


def _items(transformation: dict[str, Any], drop: str | None = None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in transformation.items() if k != drop))


def eager_texts(*transformations: dict[str, Any]) -> list[str]:
    """``explicit``'s ``eager`` entries, as the SDK would write them from the dicts."""
    return [_transformation_text(_items(t), eager=True) for t in transformations]


def delivery_url(public_id: str, transformation: dict[str, Any], asset_type: str = ASSET_TYPE,
                 resource_type: str = IMAGE) -> str:
    url, _ = cloudinary.utils.cloudinary_url(
        public_id, type=asset_type, resource_type=resource_type, sign_url=True, format=transformation.get("format"),
        raw_transformation=_transformation_text(_items(transformation, drop="format")),
    )
    return url


def derived_urls(public_id: str, asset_type: str = ASSET_TYPE, resource_type: str = IMAGE) -> tuple[str, str]:
    """Signed delivery URLs of the thumbnail and the preview (no call to Cloudinary)."""
    thumb, preview = derived_transformations(resource_type)
    return delivery_url(public_id, thumb, asset_type, resource_type), delivery_url(public_id, preview, asset_type, resource_type)


def generate_derived(public_id: str, asset_type: str = ASSET_TYPE, resource_type: str = IMAGE) -> tuple[Derived, Derived]:
    """Upload API ``explicit`` (not rate-limited): make the thumbnail and the preview now, and
    return their signed delivery URLs (authenticated assets need signed URLs). For a video the
    thumbnail is a poster frame and the preview a video."""
    thumb_t, preview_t = derived_transformations(resource_type)
    result = _upload_api_call(cloudinary.uploader.explicit, public_id, type=asset_type, resource_type=resource_type,
                              eager=eager_texts(thumb_t, preview_t), timeout=CALL_TIMEOUT)
    eager = result.get("eager") or []
    sizes = [(e.get("width"), e.get("height")) for e in eager]
    while len(sizes) < 2:
        sizes.append((None, None))
    thumb_url, preview_url = derived_urls(public_id, asset_type, resource_type)
    thumb = Derived(thumb_url, sizes[0][0] or thumb_t["width"], sizes[0][1] or thumb_t["height"])
    preview = Derived(preview_url, sizes[1][0] or 0, sizes[1][1] or 0)
    return thumb, preview


def request_derived(public_id: str, asset_type: str, resource_type: str, notify_url: str) -> None:
    """Upload API ``explicit`` with ``eager_async``: Cloudinary makes the thumbnail and the
    preview in the background and posts an ``eager`` notification to ``notify_url`` when they
    exist. What a video needs: Cloudinary refuses to transform a large one synchronously
    ("Video is too large to process synchronously, please use ... eager_async=true")."""
    thumb_t, preview_t = derived_transformations(resource_type)
    _upload_api_call(cloudinary.uploader.explicit, public_id, type=asset_type, resource_type=resource_type,
                     eager=eager_texts(thumb_t, preview_t), eager_async=True, eager_notification_url=notify_url, timeout=CALL_TIMEOUT)


def destroy(public_id: str, asset_type: str = ASSET_TYPE, resource_type: str = IMAGE) -> str:
    return _upload_api_call(cloudinary.uploader.destroy, public_id, type=asset_type, resource_type=resource_type,
                            invalidate=True, timeout=CALL_TIMEOUT).get("result", "")
