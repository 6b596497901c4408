"""Upload API: ``POST /v1_1/<cloud>/<resource_type>/<action>``.

Actions: upload (signed, or unsigned with an unsigned upload preset; chunked with
``Content-Range``; ``async``), explicit, destroy, tags, rename.
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
import string
import time
import uuid
from pathlib import PurePosixPath
from typing import Any, Callable

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.datastructures import FileStorage

from cloudinary_emulator import signing, transform
from cloudinary_emulator.analysis import InvalidImage, open_image
from cloudinary_emulator.derived import eager_entries, parse_eager_param, start_eager_async
from cloudinary_emulator.errors import CloudinaryError
from cloudinary_emulator.params import (
    RESOURCE_TYPES, form_params, is_true, iso_utc, parse_context, parse_tags, validate_public_id,
    validate_type)
from cloudinary_emulator.resources import asset_response
from cloudinary_emulator.state import check_cloud, inject_api_faults, public_host, state, wait_out_cut_link
from cloudinary_emulator.media import identify
from cloudinary_emulator.storage import Asset

log = logging.getLogger(__name__)

STALE_AFTER_SECONDS = 3600
PUBLIC_ID_CHARS = string.ascii_lowercase + string.digits
# What an unsigned upload may pass besides its preset (Cloudinary's list).
UNSIGNED_ALLOWED = frozenset({
    "upload_preset", "callback", "public_id", "folder", "asset_folder", "tags", "context",
    "metadata", "face_coordinates", "custom_coordinates", "source", "filename_override",
    "display_name", "public_id_prefix", "timestamp", "file"})
# Options that would change the asset or start work the emulator cannot do: refused, not ignored.
UNSUPPORTED_PARAMS = (
    "moderation", "background_removal", "raw_convert", "ocr", "categorization", "detection",
    "auto_tagging", "responsive_breakpoints", "eval", "on_success", "regions", "access_control",
    "auto_chaptering", "auto_transcription", "cinemagraph_analysis", "accessibility_analysis",
    "quality_analysis", "allowed_formats", "custom_coordinates", "face_coordinates", "metadata")
# The tags, context and metadata endpoints send these unsigned (the SDK's non_signable).
NON_SIGNABLE = {"tags": ("notification_url", "batch_id")}

upload_api = Blueprint("upload_api", __name__)


# -- authentication ------------------------------------------------------------------------

def authenticate(params: dict[str, Any], action: str) -> dict[str, Any]:
    """Check the signature (or the unsigned preset); returns the params with the preset applied."""
    settings = state().settings
    preset = params.get("upload_preset")
    if not params.get("signature") and action == "upload":
        return unsigned_params(params)
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
        shown = time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime(timestamp))
        raise CloudinaryError(
            400, f"Stale request - reported time is {shown} which is more than 1 hour ago")
    signed = {k: v for k, v in params.items() if k not in NON_SIGNABLE.get(action, ())}
    check = signing.check_request_signature(signed, signature, settings.api_secret,
                                            settings.signature_algorithm)
    if not check.valid:
        raise CloudinaryError(
            401, f"Invalid Signature {signature}. String to sign - '{check.string_to_sign}'.")
    if preset:
        found = state().storage.get_preset(str(preset))
        if found is None:
            raise CloudinaryError(400, f"Upload preset not found - {preset}")
        return {**found[1], **params}
    return params


def unsigned_params(params: dict[str, Any]) -> dict[str, Any]:
    """An unsigned upload: only through an unsigned preset, with Cloudinary's short list of params."""
    name = params.get("upload_preset")
    if not name:
        raise CloudinaryError(400, "Upload preset must be specified when using unsigned upload")
    found = state().storage.get_preset(str(name))
    if found is None:
        raise CloudinaryError(400, f"Upload preset not found - {name}")
    unsigned, settings = found
    if not unsigned:
        raise CloudinaryError(400, "Upload preset must be whitelisted for unsigned uploads")
    extra = sorted(k for k in params if k not in UNSIGNED_ALLOWED)
    if extra:
        raise CloudinaryError(
            400, f"{extra[0]} parameter is not allowed when using unsigned upload. Only "
                 + ",".join(sorted(UNSIGNED_ALLOWED - {"file", "timestamp"}))
                 + " upload parameters are allowed.")
    return {**settings, **params}


# -- reading the upload --------------------------------------------------------------------

def too_large(size: int) -> CloudinaryError:
    limit = state().settings.max_file_size
    return CloudinaryError(400, f"File size too large. Got {size}. Maximum is {limit}.")


def read_file(params: dict[str, Any], upload: FileStorage | None) -> tuple[bytes, str | None]:
    """The uploaded bytes and original file name (a part or a ``data:`` URI)."""
    if upload is not None:
        # Bounded already: Flask refuses bodies above MAX_CONTENT_LENGTH before we get here.
        data = upload.read()
        name = upload.filename
    else:
        value = params.get("file")
        if not value or not isinstance(value, str):
            raise CloudinaryError(400, "Missing required parameter - file")
        if value.startswith(("http://", "https://", "s3://", "gs://", "ftp://")):
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
    if len(data) > state().settings.max_file_size:
        raise too_large(len(data))
    if not data:
        raise CloudinaryError(400, "Empty file")
    return data, name


def choose_public_id(params: dict[str, Any], filename: str | None, resource_type: str) -> str:
    public_id = str(params.get("public_id") or "")
    stem = PurePosixPath(filename).stem if filename else ""
    if not public_id and is_true(params.get("use_filename")) and stem:
        public_id = re.sub(r"[^A-Za-z0-9_\-]", "_", stem)[:100]
        if is_true(params.get("unique_filename", "1")):
            public_id += "_" + "".join(secrets.choice(PUBLIC_ID_CHARS) for _ in range(6))
    if not public_id:
        public_id = "".join(secrets.choice(PUBLIC_ID_CHARS) for _ in range(20))
        if resource_type == "raw" and filename and PurePosixPath(filename).suffix:
            # A raw asset's public_id carries the file's extension.
            public_id += PurePosixPath(filename).suffix.lower()
    folder = str(params.get("folder") or "").strip("/")
    if folder:
        public_id = f"{folder}/{public_id.lstrip('/')}"
    return validate_public_id(public_id)


def refuse_unsupported(params: dict[str, Any]) -> None:
    for key in UNSUPPORTED_PARAMS:
        if params.get(key) not in (None, "", []):
            raise CloudinaryError(400, f"{key} is not supported by the Cloudinary emulator")


def incoming_transformation(data: bytes, params: dict[str, Any]) -> bytes:
    """Apply an incoming ``transformation`` and/or ``format`` to an image before it is stored."""
    text = str(params.get("transformation") or "")
    fmt = str(params.get("format") or "").lower() or None
    if not text and not fmt:
        return data
    try:
        parsed = transform.parse(text)
    except transform.TransformationError as exc:
        raise CloudinaryError(400, str(exc)) from None
    target = transform.normal_format(fmt or parsed.format or "")
    try:
        image = open_image(data)
    except InvalidImage:
        raise CloudinaryError(400, "Invalid image file") from None
    if not target:
        target = transform.format_of(image)
    if target not in transform.OUTPUT_FORMATS:
        raise CloudinaryError(400, f"Invalid format - {fmt}")
    result = transform.apply(image, parsed, lambda im: [])
    return transform.encode(result, target, parsed.quality)


# -- actions -------------------------------------------------------------------------------

def handle_upload(resource_type: str) -> dict[str, Any]:
    st = state()
    params, upload = form_params()
    params = authenticate(params, "upload")
    refuse_unsupported(params)
    type_ = validate_type(str(params.get("type") or "upload"))
    data, filename = read_file(params, upload)
    public_id = choose_public_id(params, filename, resource_type)
    content_range = request.headers.get("Content-Range")
    if content_range:
        partial, whole = st.chunks.receive(request.headers.get("X-Unique-Upload-Id", ""),
                                           content_range, data, public_id)
        public_id = partial.public_id
        if whole is None:
            # An intermediate part: the asset is not there yet.
            return {"done": False, "public_id": public_id, "bytes": partial.received_bytes}
        data = whole
    eager = parse_eager_param(params)
    context = parse_context(params.get("context")) if params.get("context") else {}
    if is_true(params.get("async")):
        batch_id = uuid.uuid4().hex
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        host = public_host()

        def run() -> None:
            with app.test_request_context(base_url=f"http://{host}"):
                try:
                    store_upload(resource_type, type_, public_id, data, filename, params, eager,
                                 context, batch_id)
                except CloudinaryError as exc:
                    log.info("async upload of %s failed: %s", public_id, exc.message)
                except Exception:  # noqa: BLE001 - a background job has nobody to answer to
                    log.exception("async upload of %s failed", public_id)

        st.jobs.submit(run)
        return {"status": "pending", "public_id": public_id, "batch_id": batch_id}
    return store_upload(resource_type, type_, public_id, data, filename, params, eager, context)


def store_upload(resource_type: str, type_: str, public_id: str, data: bytes,
                 filename: str | None, params: dict[str, Any], eager: Any,
                 context: dict[str, str], batch_id: str | None = None) -> dict[str, Any]:
    """Identify, transform, analyse and store an upload; notify; the answer."""
    st = state()
    media_type, info, data = identify(resource_type, data, filename,
                                      lambda image_bytes: incoming_transformation(image_bytes, params),
                                      st.settings.max_megapixels)
    now = time.time()
    asset = Asset(type=type_, public_id=public_id, asset_id=secrets.token_hex(16),
                  version=int(now), version_id=secrets.token_hex(16), created_at=iso_utc(now),
                  original_filename=PurePosixPath(filename).stem if filename else None,
                  file_name="", info=info, tags=parse_tags(params.get("tags")),
                  resource_type=media_type, extra={"context": context} if context else {})
    overwrite = is_true(params.get("overwrite", "1"))
    stored, old = st.storage.put(asset, data, overwrite=overwrite)
    body = asset_response(stored, params)
    notify_url = params.get("notification_url")
    if old is not None and not overwrite:
        # Still a successful upload call: the client waiting for its webhook gets one.
        body["existing"] = True
    elif eager and media_type in ("image", "video"):
        if is_true(params.get("eager_async")):
            body["eager"] = start_eager_async(
                stored, eager, params.get("eager_notification_url") or notify_url)
        else:
            body["eager"] = eager_entries(stored, eager, public_host())
    if old is not None and overwrite:
        body["overwritten"] = True
    if batch_id is not None:
        body["batch_id"] = batch_id
    st.stats.upload_done()
    if notify_url:
        st.notifier.notify(str(notify_url), {**body, "notification_type": "upload"})
    return body


def signed_asset_request(action: str) -> tuple[dict[str, Any], str, str]:
    """The params, type and public_id of a signed call on one existing asset (explicit, destroy)."""
    params, _ = form_params()
    params = authenticate(params, action)
    public_id = params.get("public_id")
    if not public_id:
        raise CloudinaryError(400, "Missing required parameter - public_id")
    type_ = validate_type(str(params.get("type") or "upload"))
    return params, type_, validate_public_id(str(public_id))


def existing(resource_type: str, type_: str, public_id: str) -> Asset:
    asset = state().storage.get(type_, public_id, resource_type)
    if asset is None:
        raise CloudinaryError(404, f"Resource not found - {public_id}")
    return asset


def handle_explicit(resource_type: str) -> dict[str, Any]:
    params, type_, public_id = signed_asset_request("explicit")
    refuse_unsupported(params)
    asset = existing(resource_type, type_, public_id)
    storage = state().storage
    if "tags" in params:
        storage.set_tags(asset, parse_tags(params.get("tags")))
    if params.get("context"):
        asset.extra["context"] = parse_context(params["context"])
        storage.put_extra(asset)
    eager = parse_eager_param(params)
    body = asset_response(asset, params)
    if eager:
        if is_true(params.get("eager_async")):
            body["eager"] = start_eager_async(
                asset, eager, params.get("eager_notification_url") or params.get("notification_url"))
        else:
            body["eager"] = eager_entries(asset, eager, public_host())
    return body


def handle_destroy(resource_type: str) -> dict[str, Any]:
    _, type_, public_id = signed_asset_request("destroy")
    derived = state().storage.delete(type_, public_id, resource_type)
    return {"result": "not found" if derived is None else "ok"}


TAG_COMMANDS = ("add", "remove", "replace", "remove_all", "set_exclusive")


def handle_tags(resource_type: str) -> dict[str, Any]:
    """``uploader.add_tag`` / ``remove_tag`` / ``replace_tag`` / ``remove_all_tags``."""
    params, _ = form_params()
    params = authenticate(params, "tags")
    command = str(params.get("command") or "")
    if command not in TAG_COMMANDS:
        raise CloudinaryError(400, f"Invalid command - {command}")
    tags = parse_tags(params.get("tag"))
    if not tags and command != "remove_all":
        raise CloudinaryError(400, "Missing required parameter - tag")
    public_ids = params.get("public_ids") or []
    if isinstance(public_ids, str):
        public_ids = [public_ids]
    if not public_ids:
        raise CloudinaryError(400, "Missing required parameter - public_ids")
    if len(public_ids) > 1000:
        raise CloudinaryError(400, "Too many public_ids (at most 1000)")
    type_ = validate_type(str(params.get("type") or "upload"))
    storage = state().storage
    found = [a for a in (storage.get(type_, pid, resource_type) for pid in public_ids) if a]
    for asset in found:
        if command in ("add", "set_exclusive"):
            new = asset.tags + [t for t in tags if t not in asset.tags]
        elif command == "remove":
            new = [t for t in asset.tags if t not in tags]
        elif command == "replace":
            new = tags
        else:
            new = []
        storage.set_tags(asset, new)
    if command == "set_exclusive":
        for tag in tags:
            storage.untag_all(tag, resource_type, {a.seq for a in found})
    return {"public_ids": [a.public_id for a in found]}


def handle_rename(resource_type: str) -> dict[str, Any]:
    params, _ = form_params()
    params = authenticate(params, "rename")
    source, target = params.get("from_public_id"), params.get("to_public_id")
    if not source or not target:
        raise CloudinaryError(400, "Missing required parameter - from_public_id/to_public_id")
    type_ = validate_type(str(params.get("type") or "upload"))
    to_type = validate_type(str(params.get("to_type") or type_))
    asset = existing(resource_type, type_, validate_public_id(str(source)))
    renamed = state().storage.rename(asset, to_type, validate_public_id(str(target)),
                                     is_true(params.get("overwrite")))
    if renamed is None:
        raise CloudinaryError(409, f"Resource already exists - {target}")
    return asset_response(renamed, {}, upload=False)


UPLOAD_ACTIONS: dict[str, Callable[[str], dict[str, Any]]] = {
    "upload": handle_upload, "explicit": handle_explicit, "destroy": handle_destroy,
    "tags": handle_tags, "rename": handle_rename}


@upload_api.post("/v1_1/<cloud>/<resource_type>/<action>")
def upload_endpoint(cloud: str, resource_type: str, action: str) -> Response:
    st = state()
    handler = UPLOAD_ACTIONS.get(action)
    allowed = RESOURCE_TYPES + ("auto",) if action == "upload" else RESOURCE_TYPES
    if handler is None or resource_type not in allowed:
        raise CloudinaryError(404, f"Unsupported action - {resource_type}/{action}")
    if action != "upload":  # the clients' uploads go on through a cut link of the workers'
        wait_out_cut_link()
    st.stats.call(action)
    check_cloud(cloud)
    inject_api_faults(action)
    return jsonify(handler(resource_type))
