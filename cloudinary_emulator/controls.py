"""The emulator's own controls under ``/_emulator``: health, faults, stats, reset."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from cloudinary_emulator.errors import CloudinaryError
from cloudinary_emulator.faults import FaultError, Faults
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
