"""The shape of one asset in answers: upload, explicit, ``resource`` and listings."""
from __future__ import annotations

from typing import Any

from cloudinary_emulator import signing
from cloudinary_emulator.params import is_true
from cloudinary_emulator.state import public_host, state
from cloudinary_emulator.storage import Asset
from cloudinary_emulator.urls import build_url

LISTING_KEYS = ("asset_id", "public_id", "format", "version", "resource_type", "type", "created_at",
                "bytes", "width", "height", "asset_folder", "display_name", "url", "secure_url")


def asset_response(asset: Asset, flags: dict[str, Any], *, upload: bool = True) -> dict[str, Any]:
    """Cloudinary's upload/resource shape; analysis keys only when asked for."""
    settings = state().settings
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


def listing_entry(asset: Asset, with_tags: bool) -> dict[str, Any]:
    body = asset_response(asset, {}, upload=False)
    entry = {k: body[k] for k in LISTING_KEYS}
    if with_tags:
        entry["tags"] = body["tags"]
    return entry
