"""The emulator's own controls under ``/_emulator``: health, faults, stats, reset, seed."""
from __future__ import annotations

from typing import Any

import base64
import binascii

from flask import Blueprint, request

from cloudinary_emulator.errors import CloudinaryError
from cloudinary_emulator.analysis import InvalidImage
from cloudinary_emulator.faults import FaultError, Faults
from cloudinary_emulator.seeding import SeedError, seed
from cloudinary_emulator.state import state

controls = Blueprint("controls", __name__, url_prefix="/_emulator")


@controls.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "cloud_name": state().settings.cloud_name}


@controls.get("/faults")
def get_faults() -> dict[str, Any]:
    return state().faults.get().to_dict()


@controls.post("/faults")
def set_faults() -> dict[str, Any]:
    changes = request.get_json(silent=True)
    try:
        return state().faults.update(changes if changes is not None else {}).to_dict()
    except FaultError as exc:
        raise CloudinaryError(400, str(exc)) from None


@controls.get("/stats")
def get_stats() -> dict[str, Any]:
    return state().stats.snapshot()


@controls.post("/reset")
def reset() -> dict[str, Any]:
    st = state()
    body = request.get_json(silent=True) or {}
    st.storage.clear()
    st.stats.reset()
    st.budget.reset()
    if isinstance(body, dict) and body.get("faults"):
        st.faults.replace(Faults())
    return {"result": "ok", "faults": st.faults.get().to_dict()}


@controls.post("/seed")
def seed_assets() -> dict[str, Any]:
    """Bulk seeding (a test aid, see ``seeding.py``): JSON ``{"count", "tags", "prefix", "type",
    "start", "interval", "file"}``, ``file`` being base64 image bytes (default: a generated JPEG)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise CloudinaryError(400, "Seed takes a JSON object")
    known = {"count", "tags", "prefix", "type", "start", "interval", "file"}
    if unknown := set(body) - known:
        raise CloudinaryError(400, f"Unknown seed keys: {', '.join(sorted(unknown))}")
    try:
        data = base64.b64decode(body["file"], validate=True) if body.get("file") else None
        return seed(state().storage, count=body.get("count", 0), tags=body.get("tags") or [],
                    prefix=str(body.get("prefix", "seed/")), type_=str(body.get("type", "upload")),
                    start=body.get("start"), interval=float(body.get("interval", 1.0)), data=data)
    except InvalidImage:
        raise CloudinaryError(400, "Invalid image file") from None
    except (SeedError, TypeError, ValueError, binascii.Error) as exc:
        raise CloudinaryError(400, f"Invalid seed: {exc}") from None
