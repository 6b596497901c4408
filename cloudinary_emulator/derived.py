"""Derived images: rendering (cached), eager answers, and ``eager_async`` in the background."""
from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import current_app
from PIL import Image

from pathlib import Path

from cloudinary_emulator import transform, video
from cloudinary_emulator.analysis import detect_faces
from cloudinary_emulator.errors import CloudinaryError
from cloudinary_emulator.state import public_host, state
from cloudinary_emulator.storage import Asset, Derived
from cloudinary_emulator.resources import asset_url

log = logging.getLogger(__name__)

Eager = list[tuple[str, transform.Transformation]]


def render_derived(asset: Asset, parsed: transform.Transformation, fmt: str) -> tuple[bytes | None, Derived]:
    """Render (or reuse) one derived image; returns (bytes or None if cached, Derived)."""
    storage = state().storage
    key_text = derived_text(parsed)
    cached = storage.get_derived(asset, key_text, fmt)
    if cached is not None:
        return None, cached
    source = storage.path_of(asset.file_name)
    still_key = (asset.info.etag, asset.resource_type, key_text, fmt)  # a still: shared by equal bytes
    if asset.resource_type == "video" and fmt in video.ENCODERS:
        data, width, height = render_video(source, asset, parsed, fmt)
    elif (render := state().renders.get(still_key)) is not None:
        data, width, height = render
    else:
        if asset.resource_type == "video":
            original = video.frame_at(source, parsed.start_offset)
        else:
            original = Image.open(source)
            original.load()
        with original:
            result = transform.apply(original, parsed, detect_faces_any)
            data = transform.encode(result, fmt, parsed.quality)
            width, height = result.width, result.height
        state().renders.put(still_key, (data, width, height))
    return data, storage.put_derived(asset, key_text, fmt, data, width, height)


VIDEO_CROPS = (None, "scale", "fit", "limit")


def render_video(source: Path, asset: Asset, parsed: transform.Transformation,
                 fmt: str) -> tuple[bytes, int, int]:
    """A derived video: scaling (``c_scale``/``c_fit``/``c_limit``) and trimming (so_, eo_, du_)."""
    for step in parsed.steps:
        if step.crop not in VIDEO_CROPS or step.effects or step.radius is not None \
                or step.angle or step.opacity is not None:
            raise transform.TransformationError(
                "The emulator derives videos by scaling (c_scale, c_fit, c_limit) and trimming"
                " (so_, eo_, du_) only")
    if isinstance(parsed.start_offset, str):
        raise transform.TransformationError("so_auto and so_<n>p apply to images from videos only")
    # The output size is what the same steps make of a frame of the video's size.
    frame = Image.new("L", (asset.info.width, asset.info.height))
    size = transform.apply(frame, parsed, lambda image: []).size
    start = parsed.start_offset or 0.0
    end = parsed.end_offset
    if parsed.duration is not None:
        end = start + parsed.duration
    data = video.transcode(source, fmt, size[0], size[1], start or None, end)
    return data, size[0] - size[0] % 2, size[1] - size[1] % 2


def detect_faces_any(image: Image.Image) -> list[list[int]]:
    return detect_faces(image.convert("RGB"))


def derived_text(parsed: transform.Transformation) -> str:
    """The transformation as it appears in the derived URL (the format goes in the extension)."""
    return parsed.text


def derived_url(asset: Asset, parsed: transform.Transformation, fmt: str) -> str:
    return asset_url(asset, derived_text(parsed), fmt)


def eager_entries(asset: Asset, eager: Eager, host: str) -> list[dict[str, Any]]:
    """Render each eager transformation; the answer's ``eager`` list."""
    out = []
    for text, parsed in eager:
        fmt = parsed.format or asset.info.format
        try:
            _, derived = render_derived(asset, parsed, fmt)
        except transform.TransformationError as exc:
            raise CloudinaryError(400, str(exc)) from None
        url = derived_url(asset, parsed, fmt)
        out.append({"transformation": text, "width": derived.width, "height": derived.height,
                    "bytes": derived.bytes, "format": fmt, "url": url, "secure_url": url})
    return out


def pending_eager(asset: Asset, eager: Eager, host: str, batch_id: str) -> list[dict[str, Any]]:
    out = []
    for text, parsed in eager:
        url = derived_url(asset, parsed, parsed.format or asset.info.format)
        out.append({"status": "processing", "batch_id": batch_id, "transformation": text,
                    "url": url, "secure_url": url})
    return out


def start_eager_async(asset: Asset, eager: Eager, notify_url: str | None) -> list[dict[str, Any]]:
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
                    "asset_id": asset.asset_id, "type": asset.type, "resource_type": asset.resource_type,
                    "batch_id": batch_id})

    st.jobs.submit(run)
    return pending_eager(asset, eager, host, batch_id)


def parse_eager_param(params: dict[str, Any]) -> Eager:
    value = params.get("eager")
    if not value:
        return []
    text = "|".join(value) if isinstance(value, list) else str(value)
    try:
        # A video's eager list may ask for derived videos (``c_limit,w_1280/mp4``) as well as stills.
        return transform.parse_eager(text, video_formats=frozenset(video.ENCODERS))
    except transform.TransformationError as exc:
        raise CloudinaryError(400, str(exc)) from None
