"""Upload API: ``POST /v1_1/<cloud>/<resource_type>/<action>`` (upload, explicit, destroy)."""
from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
import time
from pathlib import PurePosixPath
from typing import Any, Callable

from flask import Blueprint, Response, jsonify
from werkzeug.datastructures import FileStorage

from cloudinary_emulator import signing
from cloudinary_emulator.analysis import InvalidImage, analyse
from cloudinary_emulator.derived import eager_entries, parse_eager_param, start_eager_async
from cloudinary_emulator.errors import CloudinaryError
from cloudinary_emulator.params import (
    form_params, is_true, iso_utc, parse_tags, validate_public_id, validate_type)
from cloudinary_emulator.resources import asset_response
from cloudinary_emulator.state import check_cloud, inject_api_faults, public_host, state
from cloudinary_emulator.storage import Asset

STALE_AFTER_SECONDS = 3600
PUBLIC_ID_CHARS = string.ascii_lowercase + string.digits

upload_api = Blueprint("upload_api", __name__)


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


def handle_upload() -> dict[str, Any]:
    st = state()
    params, upload = form_params()
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
    params, _ = form_params()
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
    derived = st.storage.delete(type_, public_id)
    return {"result": "not found" if derived is None else "ok"}


UPLOAD_ACTIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "upload": handle_upload, "explicit": handle_explicit, "destroy": handle_destroy}


@upload_api.post("/v1_1/<cloud>/<resource_type>/<action>")
def upload_endpoint(cloud: str, resource_type: str, action: str) -> Response:
    st = state()
    handler = UPLOAD_ACTIONS.get(action)
    allowed = ("image", "auto") if action == "upload" else ("image",)
    if handler is None or resource_type not in allowed:
        raise CloudinaryError(404, f"Unsupported action - {resource_type}/{action}")
    st.stats.call(action)
    check_cloud(cloud)
    inject_api_faults()
    return jsonify(handler())
