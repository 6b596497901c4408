"""The emulator's Flask app: Upload API, Admin API, delivery, CORS and the ``/_emulator`` controls."""
from __future__ import annotations

import base64
import binascii
import email.utils
import hmac
import hashlib
import logging
import re
import secrets
import string
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import wraps
from pathlib import PurePosixPath
from typing import Any, Callable

from flask import Flask, Response, current_app, g, jsonify, request, send_file
from PIL import Image
from werkzeug.datastructures import FileStorage

from cloudinary_emulator import signing, transform
from cloudinary_emulator.analysis import InvalidImage, analyse, detect_faces
from cloudinary_emulator.errors import CloudinaryError, error_response, register_error_handlers
from cloudinary_emulator.faults import AdminBudget, BudgetDecision, FaultError, Faults, FaultState
from cloudinary_emulator.notifications import Notifier, iso_now
from cloudinary_emulator.settings import Settings
from cloudinary_emulator.stats import Stats
from cloudinary_emulator.storage import Asset, Storage
from cloudinary_emulator.urls import (
    DELIVERY_TYPES, SIGNED_TYPES, build_url, parse_delivery_path, string_to_sign)

log = logging.getLogger(__name__)

STALE_AFTER_SECONDS = 3600
PUBLIC_ID_CHARS = string.ascii_lowercase + string.digits
# One path segment of a public_id: letters (Unicode too), digits and a few safe marks; no
# leading dot, so neither "." nor ".." nor hidden names can appear. Storage names are hashes,
# so this guards URLs and listings rather than the file system.
SEGMENT_RE = re.compile(r"^[\w\-@+=~,!()][\w\-@+=~,!(). ]*$")
MAX_PUBLIC_ID = 255
TRUE_VALUES = {"1", "true", "yes", "on"}
CORS_HEADERS = "Content-Type, Content-Range, Content-Disposition, X-Requested-With, X-Unique-Upload-Id"


class EmulatorState:
    """Everything shared by requests: storage, faults, budget, counters and background pools."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage = Storage(settings.data_dir)
        self.faults = FaultState(settings.faults)
        self.budget = AdminBudget()
        self.stats = Stats()
        self.notifier = Notifier(
            secret=settings.api_secret, algorithm=settings.notification_algorithm,
            faults=self.faults, stats=self.stats, retries=settings.notification_retries,
            retry_delay=settings.notification_retry_delay,
            timeout=settings.notification_timeout, workers=settings.notification_workers)
        # eager_async renders run here, off the request thread.
        self.jobs = ThreadPoolExecutor(max_workers=4, thread_name_prefix="eager")
        self.cursor_key = hashlib.sha256(b"cursor" + settings.api_secret.encode()).digest()

    def shutdown(self) -> None:
        self.jobs.shutdown(wait=False, cancel_futures=True)
        self.notifier.shutdown()
        self.storage.close()


def state() -> EmulatorState:
    return current_app.extensions["cloudinary_emulator"]


# -- small helpers -------------------------------------------------------------------------

def is_true(value: Any) -> bool:
    return str(value).strip().lower() in TRUE_VALUES


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def public_host() -> str:
    """``host:port`` for delivery URLs: configured, or whatever the client reached us at."""
    return state().settings.public_host or request.host


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


def check_cloud(cloud: str) -> None:
    if cloud != state().settings.cloud_name:
        raise CloudinaryError(401, f"Invalid cloud_name {cloud}")


def inject_api_faults() -> None:
    """Latency, then the random General Error, for Upload and Admin API calls."""
    st = state()
    faults = st.faults.get()
    if faults.latency_ms > 0:
        time.sleep(faults.latency_ms / 1000.0)
    if st.faults.chance(faults.error_rate):
        st.stats.error_injected()
        raise CloudinaryError(500, "General Error")


# -- Upload API ----------------------------------------------------------------------------

def upload_params() -> tuple[dict[str, Any], FileStorage | None]:
    """The form as Cloudinary reads it: ``key[]`` fields become lists under ``key``."""
    form = request.form
    params: dict[str, Any] = {}
    for key in form.keys():
        if key.endswith("[]"):
            params[key[:-2]] = form.getlist(key)
        else:
            params[key] = form.get(key, "")
    return params, request.files.get("file")


def authenticate_upload(params: dict[str, Any]) -> None:
    """api_key, timestamp and signature, with Cloudinary's messages and statuses."""
    settings = state().settings
    api_key = params.get("api_key")
    if not api_key:
        raise CloudinaryError(401, "Must supply api_key")
    if api_key != settings.api_key:
        raise CloudinaryError(401, f"Unknown API key {api_key}")
    signature = params.get("signature")
    if not signature or not isinstance(signature, str):
        raise CloudinaryError(400, "Missing required parameter - signature")
    raw_ts = params.get("timestamp")
    if not raw_ts:
        raise CloudinaryError(400, "Missing required parameter - timestamp")
    try:
        timestamp = int(str(raw_ts))
    except ValueError:
        raise CloudinaryError(400, f"Invalid timestamp - {raw_ts}") from None
    # Only the past goes stale: a client clock ahead of ours is accepted, as on Cloudinary.
    if timestamp < time.time() - STALE_AFTER_SECONDS:
        raise CloudinaryError(
            400, f"Stale request - reported time is {timestamp} which is more than 1 hour ago")
    check = signing.check_request_signature(params, signature, settings.api_secret,
                                            settings.signature_algorithm)
    if not check.valid:
        raise CloudinaryError(
            401, f"Invalid Signature {signature}. String to sign - '{check.string_to_sign}'.")


def read_file(params: dict[str, Any], upload: FileStorage | None) -> tuple[bytes, str | None]:
    """The uploaded bytes and original file name (a part or a ``data:`` URI)."""
    limit = state().settings.max_file_size
    if upload is not None:
        # Bounded already: Flask refuses bodies above MAX_CONTENT_LENGTH before we get here.
        data = upload.read()
        name = upload.filename
    else:
        value = params.get("file")
        if not value or not isinstance(value, str):
            raise CloudinaryError(400, "Missing required parameter - file")
        if value.startswith(("http://", "https://", "s3://", "gs://")):
            raise CloudinaryError(400, "Remote file URLs are not supported by the emulator")
        if not value.startswith("data:") or "," not in value:
            raise CloudinaryError(400, "Invalid image file")
        header, _, payload = value.partition(",")
        if not header.endswith(";base64"):
            raise CloudinaryError(400, "Invalid image file")
        try:
            data = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError):
            raise CloudinaryError(400, "Invalid image file") from None
        name = "file"
    if len(data) > limit:
        raise CloudinaryError(413, f"File size too large. Got {len(data)}. Maximum is {limit}.")
    if not data:
        raise CloudinaryError(400, "Empty file")
    return data, name


def choose_public_id(params: dict[str, Any], filename: str | None) -> str:
    public_id = str(params.get("public_id") or "")
    if not public_id and is_true(params.get("use_filename")) and filename:
        public_id = re.sub(r"[^A-Za-z0-9_\-]", "_", PurePosixPath(filename).stem)[:100]
        if is_true(params.get("unique_filename", "1")):
            public_id += "_" + "".join(secrets.choice(PUBLIC_ID_CHARS) for _ in range(6))
    if not public_id:
        public_id = "".join(secrets.choice(PUBLIC_ID_CHARS) for _ in range(20))
    folder = str(params.get("folder") or "").strip("/")
    if folder:
        public_id = f"{folder}/{public_id}"
    return validate_public_id(public_id)


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


def asset_response(asset: Asset, flags: dict[str, Any], *, upload: bool = True) -> dict[str, Any]:
    """Cloudinary's upload/resource shape; analysis keys only when asked for."""
    st = state()
    settings = st.settings
    info = asset.info
    url = build_url(cloud_name=settings.cloud_name, secret=settings.api_secret,
                    host=public_host(), type_=asset.type, public_id=asset.public_id,
                    fmt=info.format, version=asset.version)
    body: dict[str, Any] = {
        "asset_id": asset.asset_id,
        "public_id": asset.public_id,
        "version": asset.version,
        "version_id": asset.version_id,
    }
    if upload:
        body["signature"] = signing.response_signature(asset.public_id, asset.version,
                                                       settings.api_secret)
    body.update({
        "width": info.width, "height": info.height, "format": info.format,
        "resource_type": "image", "created_at": asset.created_at, "tags": list(asset.tags),
        "pages": info.pages, "bytes": info.bytes, "type": asset.type, "etag": info.etag,
        "placeholder": False,
        # The emulator serves plain HTTP only, so secure_url is the same address.
        "url": url, "secure_url": url,
    })
    folder = asset.public_id.rpartition("/")[0]
    body["asset_folder"] = folder
    body["display_name"] = asset.public_id.rpartition("/")[2]
    if asset.original_filename is not None:
        body["original_filename"] = asset.original_filename
    if is_true(flags.get("faces")):
        body["faces"] = info.faces
    if is_true(flags.get("colors")):
        body["colors"] = info.colors
        body["predominant"] = info.predominant
    if is_true(flags.get("phash")):
        body["phash"] = info.phash
    if is_true(flags.get("image_metadata")) or is_true(flags.get("media_metadata")):
        body["image_metadata"] = info.image_metadata
    return body


def render_derived(asset: Asset, parsed: transform.Transformation, fmt: str) -> tuple[bytes | None, Any]:
    """Render (or reuse) one derived image; returns (bytes or None if cached, Derived)."""
    storage = state().storage
    key_text = derived_text(parsed)
    cached = storage.get_derived(asset, key_text, fmt)
    if cached is not None:
        return None, cached
    with Image.open(storage.path_of(asset.file_name)) as original:
        original.load()
        result = transform.apply(original, parsed, detect_faces_any)
        data = transform.encode(result, fmt, parsed.quality)
        width, height = result.width, result.height
    return data, storage.put_derived(asset, key_text, fmt, data, width, height)


def detect_faces_any(image: Image.Image) -> list[list[int]]:
    return detect_faces(image.convert("RGB"))


def derived_text(parsed: transform.Transformation) -> str:
    """The transformation as it appears in the derived URL (the format goes in the extension)."""
    return parsed.text


def eager_entries(asset: Asset, eager: list[tuple[str, transform.Transformation]],
                  host: str) -> list[dict[str, Any]]:
    """Render each eager transformation; the answer's ``eager`` list."""
    settings = state().settings
    out = []
    for text, parsed in eager:
        fmt = parsed.format or asset.info.format
        _, derived = render_derived(asset, parsed, fmt)
        url = build_url(cloud_name=settings.cloud_name, secret=settings.api_secret, host=host,
                        type_=asset.type, public_id=asset.public_id, fmt=fmt,
                        version=asset.version, transformation=derived_text(parsed))
        out.append({"transformation": text, "width": derived.width, "height": derived.height,
                    "bytes": derived.bytes, "format": fmt, "url": url, "secure_url": url})
    return out


def pending_eager(asset: Asset, eager: list[tuple[str, transform.Transformation]], host: str,
                  batch_id: str) -> list[dict[str, Any]]:
    settings = state().settings
    out = []
    for text, parsed in eager:
        fmt = parsed.format or asset.info.format
        url = build_url(cloud_name=settings.cloud_name, secret=settings.api_secret, host=host,
                        type_=asset.type, public_id=asset.public_id, fmt=fmt,
                        version=asset.version, transformation=derived_text(parsed))
        out.append({"status": "processing", "batch_id": batch_id, "transformation": text,
                    "url": url, "secure_url": url})
    return out


def start_eager_async(asset: Asset, eager: list[tuple[str, transform.Transformation]],
                      notify_url: str | None) -> list[dict[str, Any]]:
    """Queue the renders; the eager notification follows when they are done."""
    st = state()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    host = public_host()
    batch_id = uuid.uuid4().hex

    def run() -> None:
        with app.test_request_context(base_url=f"http://{host}"):
            try:
                entries = eager_entries(asset, eager, host)
            except Exception:  # noqa: BLE001 - a background job has nobody to answer to
                log.exception("eager render failed for %s", asset.public_id)
                return
            if notify_url:
                st.notifier.notify(notify_url, {
                    "notification_type": "eager", "eager": entries, "public_id": asset.public_id,
                    "asset_id": asset.asset_id, "type": asset.type, "resource_type": "image",
                    "batch_id": batch_id})

    st.jobs.submit(run)
    return pending_eager(asset, eager, host, batch_id)


def parse_eager_param(params: dict[str, Any]) -> list[tuple[str, transform.Transformation]]:
    value = params.get("eager")
    if not value:
        return []
    text = "|".join(value) if isinstance(value, list) else str(value)
    try:
        return transform.parse_eager(text)
    except transform.TransformationError as exc:
        raise CloudinaryError(400, str(exc)) from None


def handle_upload() -> dict[str, Any]:
    st = state()
    params, upload = upload_params()
    authenticate_upload(params)
    type_ = validate_type(str(params.get("type") or "upload"))
    data, filename = read_file(params, upload)
    public_id = choose_public_id(params, filename)
    eager = parse_eager_param(params)
    try:
        info = analyse(data)
    except InvalidImage:
        raise CloudinaryError(400, "Invalid image file") from None
    now = time.time()
    asset = Asset(type=type_, public_id=public_id, asset_id=secrets.token_hex(16),
                  version=int(now), version_id=secrets.token_hex(16), created_at=iso_utc(now),
                  original_filename=PurePosixPath(filename).stem if filename else None,
                  file_name="", info=info, tags=parse_tags(params.get("tags")))
    overwrite = is_true(params.get("overwrite", "1"))
    stored, old = st.storage.put(asset, data, overwrite=overwrite)
    body = asset_response(stored, params)
    notify_url = params.get("notification_url")
    if old is not None and not overwrite:
        # Still a successful upload call: the client waiting for its webhook gets one.
        body["existing"] = True
    elif eager:
        if is_true(params.get("eager_async")):
            body["eager"] = start_eager_async(
                stored, eager, params.get("eager_notification_url") or notify_url)
        else:
            body["eager"] = eager_entries(stored, eager, public_host())
    if old is not None and overwrite:
        body["overwritten"] = True
    st.stats.upload_done()
    if notify_url:
        st.notifier.notify(str(notify_url), {**body, "notification_type": "upload"})
    return body


def signed_asset_request() -> tuple[dict[str, Any], str, str]:
    """The params, type and public_id of a signed call on one existing asset (explicit, destroy)."""
    params, _ = upload_params()
    authenticate_upload(params)
    public_id = params.get("public_id")
    if not public_id:
        raise CloudinaryError(400, "Missing required parameter - public_id")
    type_ = validate_type(str(params.get("type") or "upload"))
    return params, type_, validate_public_id(str(public_id))


def handle_explicit() -> dict[str, Any]:
    st = state()
    params, type_, public_id = signed_asset_request()
    asset = st.storage.get(type_, public_id)
    if asset is None:
        raise CloudinaryError(404, f"Resource not found - {public_id}")
    eager = parse_eager_param(params)
    body = asset_response(asset, params)
    if eager:
        if is_true(params.get("eager_async")):
            body["eager"] = start_eager_async(
                asset, eager, params.get("eager_notification_url") or params.get("notification_url"))
        else:
            body["eager"] = eager_entries(asset, eager, public_host())
    return body


def handle_destroy() -> dict[str, Any]:
    st = state()
    _, type_, public_id = signed_asset_request()
    found = st.storage.delete(type_, public_id)
    return {"result": "ok" if found else "not found"}


UPLOAD_ACTIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "upload": handle_upload, "explicit": handle_explicit, "destroy": handle_destroy}


# -- Admin API -----------------------------------------------------------------------------

def rate_limit_headers(decision: BudgetDecision) -> dict[str, str]:
    return {
        "X-FeatureRateLimit-Limit": str(decision.limit),
        "X-FeatureRateLimit-Remaining": str(decision.remaining),
        "X-FeatureRateLimit-Reset": email.utils.formatdate(decision.reset_at, usegmt=True),
    }


def admin_call(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """Count, authenticate (Basic), spend the budget, inject faults, add rate-limit headers."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Response]:
        @wraps(view)
        def wrapper(cloud: str, **kwargs: Any) -> Response:
            st = state()
            st.stats.call(kind)
            st.stats.admin_call()
            faults = st.faults.get()
            decision = st.budget.peek(faults)
            try:
                check_cloud(cloud)
                auth = request.authorization
                settings = st.settings
                if auth is None or auth.type != "basic":
                    raise CloudinaryError(401, "Must supply api_key")
                if not (hmac.compare_digest(auth.username or "", settings.api_key)
                        and hmac.compare_digest(auth.password or "", settings.api_secret)):
                    raise CloudinaryError(401, "Invalid credentials")
                decision = st.budget.spend(faults)
                if not decision.allowed:
                    st.stats.rate_limited()
                    raise CloudinaryError(420, "Rate Limit Exceeded")
                inject_api_faults()
                response = jsonify(view(**kwargs))
            except CloudinaryError as exc:
                response = error_response(exc.status, exc.message, exc.headers)
            response.headers.update(rate_limit_headers(decision))
            return response

        return wrapper

    return decorate


def encode_cursor(seq: int) -> str:
    mac = hmac.new(state().cursor_key, str(seq).encode(), hashlib.sha256).hexdigest()[:16]
    return base64.urlsafe_b64encode(f"{seq}.{mac}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor points after; anything we did not issue answers 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        seq_text, mac = raw.split(".", 1)
        seq = int(seq_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise CloudinaryError(400, f"Invalid next_cursor - {cursor}") from None
    expected = hmac.new(state().cursor_key, str(seq).encode(), hashlib.sha256).hexdigest()[:16]
    if not hmac.compare_digest(mac, expected):
        raise CloudinaryError(400, f"Invalid next_cursor - {cursor}")
    return seq


def listing_entry(asset: Asset, with_tags: bool) -> dict[str, Any]:
    body = asset_response(asset, {}, upload=False)
    keep = ("asset_id", "public_id", "format", "version", "resource_type", "type", "created_at",
            "bytes", "width", "height", "asset_folder", "display_name", "url", "secure_url")
    entry = {k: body[k] for k in keep}
    if with_tags:
        entry["tags"] = body["tags"]
    return entry


# -- delivery ------------------------------------------------------------------------------

def deliver(type_: str, rest: str) -> Response:
    st = state()
    settings = st.settings
    path = parse_delivery_path(rest)
    if type_ not in DELIVERY_TYPES:
        raise CloudinaryError(404, f"Resource not found - {rest}")
    # A signature, when present, must be right; authenticated and private need one.
    if path.signature is not None or type_ in SIGNED_TYPES:
        algorithms = [settings.signature_algorithm] if settings.signature_algorithm else ["sha1", "sha256"]
        if path.signature is None or not signing.url_signature_matches(
                path.signature, string_to_sign(path), settings.api_secret, algorithms):
            raise CloudinaryError(401, "Invalid or missing URL signature")
    try:
        parsed = transform.parse(path.transformation)
    except transform.TransformationError as exc:
        raise CloudinaryError(400, str(exc)) from None
    asset, ext = find_delivered(type_, path.source)
    fmt = parsed.format or ext or asset.info.format
    if fmt not in transform.CONTENT_TYPES:
        raise CloudinaryError(400, f"Unsupported format - {fmt}")
    headers = {"Cache-Control": "public, max-age=2592000", "Access-Control-Allow-Origin": "*"}
    if not parsed.steps or all(_is_noop(s) for s in parsed.steps):
        if fmt == asset.info.format and parsed.quality is None:
            response = send_file(st.storage.path_of(asset.file_name),
                                 mimetype=transform.CONTENT_TYPES[fmt], etag=asset.info.etag,
                                 conditional=True, max_age=2592000)
            response.headers["Access-Control-Allow-Origin"] = "*"
            return response
    if fmt not in transform.OUTPUT_FORMATS:
        raise CloudinaryError(400, f"Unsupported format - {fmt}")
    data, derived = render_derived(asset, parsed, fmt)
    if data is None:
        response = send_file(st.storage.path_of(derived.file_name, derived=True),
                             mimetype=transform.CONTENT_TYPES[fmt], etag=derived.key[:32],
                             conditional=True, max_age=2592000)
    else:
        response = Response(data, mimetype=transform.CONTENT_TYPES[fmt], headers=headers)
        response.set_etag(derived.key[:32])
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _is_noop(step: transform.Step) -> bool:
    return step.width is None and step.height is None


def find_delivered(type_: str, source: str) -> tuple[Asset, str | None]:
    """The asset a delivery path names: ``pid.ext`` first, then the whole source as the id."""
    storage = state().storage
    stem, dot, ext = source.rpartition(".")
    if dot and "/" not in ext and ext:
        asset = storage.get(type_, stem)
        if asset is not None:
            return asset, ext.lower()
    asset = storage.get(type_, source)
    if asset is None:
        raise CloudinaryError(404, f"Resource not found - {source}")
    return asset, None


# -- the app -------------------------------------------------------------------------------

def create_app(settings: Settings | None = None) -> Flask:
    """Build the emulator app around one EmulatorState (storage, faults, stats, workers)."""
    settings = settings or Settings()
    app = Flask(__name__)
    # Room for a data URI (base64 is 4/3 of the file) plus the other form fields.
    body_limit = settings.max_file_size * 4 // 3 + 1024 * 1024
    app.config.update(MAX_CONTENT_LENGTH=body_limit, MAX_FORM_MEMORY_SIZE=body_limit)
    # Keep Cloudinary's key order in answers (asset_id, public_id, version, ...).
    app.json.sort_keys = False  # type: ignore[attr-defined]
    st = EmulatorState(settings)
    app.extensions["cloudinary_emulator"] = st
    register_error_handlers(app, settings.max_file_size)

    @app.before_request
    def _request_id() -> None:
        g.request_id = uuid.uuid4().hex

    @app.after_request
    def _common_headers(response: Response) -> Response:
        response.headers.setdefault("X-Request-Id", g.get("request_id", uuid.uuid4().hex))
        if request.path.startswith("/v1_1/"):
            # Browsers upload straight to the Upload API from other origins (signed forms).
            response.headers["Access-Control-Allow-Origin"] = "*"
            response.headers["Access-Control-Expose-Headers"] = (
                "X-Request-Id, X-FeatureRateLimit-Limit, X-FeatureRateLimit-Remaining,"
                " X-FeatureRateLimit-Reset")
        return response

    @app.before_request
    def _preflight() -> Response | None:
        # Answered before routing: Flask's automatic OPTIONS would omit the CORS headers.
        if request.method != "OPTIONS" or not request.path.startswith("/v1_1/"):
            return None
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = (
            request.headers.get("Access-Control-Request-Headers") or CORS_HEADERS)
        response.headers["Access-Control-Max-Age"] = "86400"
        return response

    @app.post("/v1_1/<cloud>/<resource_type>/<action>")
    def upload_api(cloud: str, resource_type: str, action: str) -> Response:
        st = state()
        handler = UPLOAD_ACTIONS.get(action)
        allowed = ("image", "auto") if action == "upload" else ("image",)
        if handler is None or resource_type not in allowed:
            raise CloudinaryError(404, f"Unsupported action - {resource_type}/{action}")
        st.stats.call(action)
        check_cloud(cloud)
        inject_api_faults()
        return jsonify(handler())

    @app.get("/v1_1/<cloud>/resources/image/tags/<path:tag>")
    @admin_call("admin_resources_by_tag")
    def resources_by_tag(tag: str) -> dict[str, Any]:
        raw_max = request.args.get("max_results", "10")
        try:
            max_results = int(raw_max)
        except ValueError:
            raise CloudinaryError(400, f"Invalid max_results - {raw_max}") from None
        if not 1 <= max_results <= 500:
            raise CloudinaryError(400, "max_results must be between 1 and 500")
        cursor = request.args.get("next_cursor")
        after = decode_cursor(cursor) if cursor else 0
        assets, more = state().storage.by_tag(tag, after, max_results)
        with_tags = is_true(request.args.get("tags", "false"))
        body: dict[str, Any] = {"resources": [listing_entry(a, with_tags) for a in assets]}
        if more and assets:
            body["next_cursor"] = encode_cursor(assets[-1].seq)
        return body

    @app.get("/v1_1/<cloud>/resources/image/<type_>/<path:public_id>")
    @admin_call("admin_resource")
    def resource(type_: str, public_id: str) -> dict[str, Any]:
        if type_ not in DELIVERY_TYPES:
            raise CloudinaryError(404, f"Resource not found - {public_id}")
        asset = state().storage.get(type_, public_id)
        if asset is None:
            raise CloudinaryError(404, f"Resource not found - {public_id}")
        body = asset_response(asset, request.args.to_dict(), upload=False)
        body["derived"] = []
        return body

    @app.delete("/v1_1/<cloud>/resources/image/<type_>")
    @admin_call("admin_delete_resources")
    def delete_resources(type_: str) -> dict[str, Any]:
        validate_type(type_)
        payload = request.get_json(silent=True) if request.is_json else None
        if isinstance(payload, dict):
            public_ids = payload.get("public_ids")
        else:
            public_ids = request.values.getlist("public_ids[]") or request.values.getlist("public_ids")
        if isinstance(public_ids, str):
            public_ids = [public_ids]
        if not public_ids or not isinstance(public_ids, list) \
                or not all(isinstance(p, str) for p in public_ids):
            raise CloudinaryError(400, "Must specify public_ids, prefix or all")
        if len(public_ids) > 100:
            raise CloudinaryError(400, "Too many public_ids (at most 100)")
        storage = state().storage
        deleted: dict[str, str] = {}
        counts: dict[str, dict[str, int]] = {}
        for pid in public_ids:
            found = storage.delete(type_, pid)
            deleted[pid] = "deleted" if found else "not_found"
            counts[pid] = {"original": int(found), "derived": 0}
        return {"deleted": deleted, "deleted_counts": counts, "partial": False}

    @app.get("/<cloud>/image/<type_>/<path:rest>")
    def delivery(cloud: str, type_: str, rest: str) -> Response:
        st = state()
        st.stats.call("delivery")
        if cloud != st.settings.cloud_name:
            raise CloudinaryError(404, f"Unknown cloud {cloud}")
        return deliver(type_, rest)

    # -- emulator controls -----------------------------------------------------------------

    @app.get("/_emulator/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "cloud_name": state().settings.cloud_name}

    @app.get("/_emulator/faults")
    def get_faults() -> dict[str, Any]:
        return state().faults.get().to_dict()

    @app.post("/_emulator/faults")
    def set_faults() -> dict[str, Any]:
        changes = request.get_json(silent=True)
        try:
            return state().faults.update(changes if changes is not None else {}).to_dict()
        except FaultError as exc:
            raise CloudinaryError(400, str(exc)) from None

    @app.get("/_emulator/stats")
    def get_stats() -> dict[str, Any]:
        return state().stats.snapshot()

    @app.post("/_emulator/reset")
    def reset() -> dict[str, Any]:
        st = state()
        body = request.get_json(silent=True) or {}
        st.storage.clear()
        st.stats.reset()
        st.budget.reset()
        if isinstance(body, dict) and body.get("faults"):
            st.faults.replace(Faults())
        return {"result": "ok", "faults": st.faults.get().to_dict()}

    return app


__all__ = ["create_app", "EmulatorState", "iso_now"]
