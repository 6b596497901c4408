"""Delivery: ``GET /<cloud>/image/<type>/[s--SIG--/][<transformation>/][v<version>/]<public_id>[.<ext>]``."""
from __future__ import annotations

import mimetypes

from flask import Blueprint, Response, request, send_file

from cloudinary_emulator import signing, transform, video
from cloudinary_emulator.derived import render_derived
from cloudinary_emulator.errors import CloudinaryError
from cloudinary_emulator.state import state
from cloudinary_emulator.storage import Asset
from cloudinary_emulator.urls import (
    DELIVERY_TYPES, SIGNED_TYPES, DeliveryPath, parse_delivery_path, string_to_sign)

delivery = Blueprint("delivery", __name__)

MAX_AGE = 2592000


@delivery.get("/<cloud>/<resource_type>/<type_>/<path:rest>")
def delivery_endpoint(cloud: str, resource_type: str, type_: str, rest: str) -> Response:
    st = state()
    st.stats.call("delivery")
    if cloud != st.settings.cloud_name:
        raise CloudinaryError(404, f"Unknown cloud {cloud}")
    if type_ not in DELIVERY_TYPES:
        raise CloudinaryError(404, f"Resource not found - {rest}")
    path = parse_delivery_path(rest)
    check_signature(path, type_)
    if resource_type == "raw":
        return deliver_raw(type_, path)
    if resource_type not in ("image", "video"):
        raise CloudinaryError(404, f"Resource not found - {rest}")
    return deliver(resource_type, type_, path)


def check_signature(path: DeliveryPath, type_: str) -> None:
    """A signature, when present, must be right; authenticated and private need one."""
    settings = state().settings
    if path.signature is not None or type_ in SIGNED_TYPES:
        algorithms = [settings.signature_algorithm] if settings.signature_algorithm else ["sha1", "sha256"]
        if path.signature is None or not signing.url_signature_matches(
                path.signature, string_to_sign(path), settings.api_secret, algorithms):
            raise CloudinaryError(401, "Invalid or missing URL signature")


def deliver_raw(type_: str, path: DeliveryPath) -> Response:
    """A raw file as stored (no transformation applies to raw)."""
    if path.transformation:
        raise CloudinaryError(400, "Transformations are not supported for raw files")
    asset = state().storage.get(type_, path.source, "raw")
    if asset is None:
        raise CloudinaryError(404, f"Resource not found - {path.source}")
    mimetype = mimetypes.guess_type(asset.public_id)[0] or "application/octet-stream"
    response = send_file(state().storage.path_of(asset.file_name), mimetype=mimetype,
                         etag=asset.info.etag, conditional=True, max_age=MAX_AGE)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def content_type(fmt: str) -> str | None:
    return transform.CONTENT_TYPES.get(fmt) or video.VIDEO_CONTENT_TYPES.get(fmt)


def deliver(resource_type: str, type_: str, path: DeliveryPath) -> Response:
    """An image or video, as stored or transformed; a video's frame as an image (``.jpg``).

    Files go out through ``send_file``: conditional requests and HTTP ``Range`` (206) work, which
    a browser's video player needs."""
    st = state()
    try:
        parsed = transform.parse(path.transformation)
    except transform.TransformationError as exc:
        raise CloudinaryError(400, str(exc)) from None
    if resource_type == "image" and (parsed.start_offset is not None or parsed.trims):
        raise CloudinaryError(400, "so_, eo_ and du_ apply to videos only")
    asset, ext = find_delivered(type_, path.source, resource_type)
    fmt = parsed.format or ext or asset.info.format
    if parsed.auto_format:
        fmt = auto_format(fmt if resource_type == "image" else "jpg")
    mimetype = content_type(fmt)
    if mimetype is None:
        raise CloudinaryError(400, f"Unsupported format - {fmt}")
    unchanged = not any(s.changes_pixels for s in parsed.steps) and parsed.quality is None \
        and parsed.start_offset is None and not parsed.trims
    if unchanged and fmt == asset.info.format:
        response = send_file(st.storage.path_of(asset.file_name), mimetype=mimetype,
                             etag=asset.info.etag, conditional=True, max_age=MAX_AGE)
    else:
        renderable = fmt in transform.OUTPUT_FORMATS or (
            resource_type == "video" and fmt in video.ENCODERS)
        if not renderable:
            raise CloudinaryError(400, f"Unsupported format - {fmt}")
        try:
            data, derived = render_derived(asset, parsed, fmt)
        except transform.TransformationError as exc:
            raise CloudinaryError(400, str(exc)) from None
        cached = st.storage.path_of(derived.file_name, derived=True)
        if cached.exists():
            response = send_file(cached, mimetype=mimetype, etag=derived.key[:32],
                                 conditional=True, max_age=MAX_AGE)
        else:  # the asset changed while rendering: answer once, uncached
            response = Response(data, mimetype=mimetype,
                                headers={"Cache-Control": f"public, max-age={MAX_AGE}"})
            response.set_etag(derived.key[:32])
    response.headers["Access-Control-Allow-Origin"] = "*"
    if parsed.auto_format:
        response.headers["Vary"] = "Accept"
    return response


def auto_format(requested: str) -> str:
    """f_auto: AVIF or WebP when the browser's Accept header takes them, else the asked format
    (a format browsers cannot show, such as TIFF, becomes JPEG)."""
    accept = request.headers.get("Accept", "")
    if "image/avif" in accept and "avif" in transform.OUTPUT_FORMATS:
        return "avif"
    if "image/webp" in accept:
        return "webp"
    return requested if requested in ("jpg", "png", "gif") else "jpg"


def find_delivered(type_: str, source: str, resource_type: str = "image") -> tuple[Asset, str | None]:
    """The asset a delivery path names: ``pid.ext`` first, then the whole source as the id."""
    storage = state().storage
    stem, dot, ext = source.rpartition(".")
    if dot and "/" not in ext and ext:
        asset = storage.get(type_, stem, resource_type)
        if asset is not None:
            return asset, ext.lower()
    asset = storage.get(type_, source, resource_type)
    if asset is None:
        raise CloudinaryError(404, f"Resource not found - {source}")
    return asset, None
