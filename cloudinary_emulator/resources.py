"""The shape of one asset in answers: upload, explicit, ``resource`` and listings."""
from __future__ import annotations

from typing import Any

from cloudinary_emulator import signing
from cloudinary_emulator.params import is_true
from cloudinary_emulator.state import public_host, state
from cloudinary_emulator.storage import Asset, Derived
from cloudinary_emulator.urls import build_url

LISTING_KEYS = ("asset_id", "public_id", "format", "version", "resource_type", "type", "created_at",
                "bytes", "width", "height", "asset_folder", "display_name", "url", "secure_url")


def asset_url(asset: Asset, transformation: str = "", fmt: str | None = None) -> str:
    """The SDK-built delivery URL of the asset (or of one derived version of it)."""
    settings = state().settings
    if asset.resource_type == "raw":
        fmt = None  # a raw public_id carries its own extension
    else:
        fmt = fmt or asset.info.format
    return build_url(cloud_name=settings.cloud_name, secret=settings.api_secret,
                     host=public_host(), type_=asset.type, public_id=asset.public_id, fmt=fmt,
                     version=asset.version, transformation=transformation,
                     resource_type=asset.resource_type)


def asset_response(asset: Asset, flags: dict[str, Any], *, upload: bool = True) -> dict[str, Any]:
    """Cloudinary's upload/resource shape; analysis keys only when asked for.

    ``upload`` adds what only Upload API answers carry: the response ``signature`` and ``api_key``.
    """
    settings = state().settings
    info = asset.info
    url = asset_url(asset)
    body: dict[str, Any] = {
        "asset_id": asset.asset_id,
        "public_id": asset.public_id,
        "version": asset.version,
        "version_id": asset.version_id,
    }
    if upload:
        body["signature"] = signing.response_signature(asset.public_id, asset.version,
                                                       settings.api_secret)
    if asset.resource_type != "raw":
        body.update({"width": info.width, "height": info.height, "format": info.format})
    body.update({"resource_type": asset.resource_type, "created_at": asset.created_at,
                 "tags": list(asset.tags)})
    if asset.resource_type == "image":
        body["pages"] = info.pages
    body.update({
        "bytes": info.bytes, "type": asset.type, "etag": info.etag, "placeholder": False,
        # The emulator serves plain HTTP only, so secure_url is the same address.
        "url": url, "secure_url": url,
    })
    folder = asset.public_id.rpartition("/")[0]
    body["asset_folder"] = folder
    body["display_name"] = asset.public_id.rpartition("/")[2]
    if asset.extra.get("context"):
        body["context"] = {"custom": dict(asset.extra["context"])}
    if asset.original_filename is not None:
        body["original_filename"] = asset.original_filename
    if asset.resource_type == "image":
        body.update(image_analysis(asset, flags))
    if asset.resource_type == "video":
        body.update(video_details(asset))
    if upload:
        body["api_key"] = settings.api_key
    return body


def image_analysis(asset: Asset, flags: dict[str, Any]) -> dict[str, Any]:
    """The analysis keys asked for with ``faces``, ``colors``, ``phash``, ``image_metadata``."""
    info = asset.info
    out: dict[str, Any] = {}
    if is_true(flags.get("faces")):
        out["faces"] = info.faces
    if is_true(flags.get("colors")):
        out["colors"] = info.colors
        out["predominant"] = info.predominant
        out["illustration_score"] = info.illustration_score
        out["semi_transparent"] = info.semi_transparent
        out["grayscale"] = info.grayscale
    if is_true(flags.get("phash")):
        out["phash"] = info.phash
    if is_true(flags.get("image_metadata")) or is_true(flags.get("media_metadata")):
        out["image_metadata"] = info.image_metadata
    return out


def video_details(asset: Asset) -> dict[str, Any]:
    """The keys Cloudinary adds for a video (or audio) asset."""
    info = asset.info
    out: dict[str, Any] = {}
    if info.video:
        out["video"] = dict(info.video)
    if info.audio:
        out["audio"] = dict(info.audio)
    out.update({"is_audio": bool(info.is_audio), "frame_rate": info.frame_rate,
                "bit_rate": info.bit_rate, "duration": info.duration, "rotation": 0,
                "nb_frames": info.nb_frames})
    return out


def derived_entry(asset: Asset, derived: Derived) -> dict[str, Any]:
    """One item of ``resource()["derived"]``."""
    url = asset_url(asset, derived.transformation, derived.format)
    return {"transformation": derived.transformation, "format": derived.format,
            "bytes": derived.bytes, "id": derived.key[:32], "url": url, "secure_url": url}


def listing_entry(asset: Asset, with_tags: bool, with_context: bool = False) -> dict[str, Any]:
    body = asset_response(asset, {}, upload=False)
    entry = {k: body[k] for k in LISTING_KEYS if k in body}
    if with_tags:
        entry["tags"] = body["tags"]
    if with_context and "context" in body:
        entry["context"] = body["context"]
    return entry
