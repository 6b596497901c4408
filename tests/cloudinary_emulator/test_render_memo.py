"""Renders shared by assets with the same bytes (cloudinary_emulator/render_memo.py): made once,
never served for other bytes, bounded."""
from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path
from typing import Any

import cloudinary
import cloudinary.uploader
import cloudinary.utils
import pytest
import requests

from cloudinary_emulator import transform
from cloudinary_emulator.app import create_app
from cloudinary_emulator.render_memo import RenderMemo
from cloudinary_emulator.settings import Settings
from cloudinary_emulator.state import EXTENSION_KEY
from cloudinary_emulator.testing import EmulatorProcess

EAGER = [{"crop": "thumb", "gravity": "faces", "width": 96, "height": 96, "format": "jpg"},
         {"crop": "limit", "width": 320, "height": 320, "format": "png"}]


def _derived_bytes(public_id: str) -> list[bytes]:
    result = cloudinary.uploader.explicit(public_id, type="upload", eager=EAGER)
    out = []
    for entry in result["eager"]:
        response = requests.get(entry["url"], timeout=10)
        assert response.status_code == 200, response.text
        out.append(response.content)
    return out


def test_same_bytes_share_renders_and_new_bytes_get_their_own(emu: EmulatorProcess, photos: Path) -> None:
    cloudinary.uploader.upload(str(photos / "astronaut.jpg"), public_id="memo/a")
    cloudinary.uploader.upload(str(photos / "astronaut.jpg"), public_id="memo/b")
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), public_id="memo/coffee")
    astronaut, coffee = _derived_bytes("memo/a"), _derived_bytes("memo/coffee")
    assert astronaut != coffee
    assert _derived_bytes("memo/b") == astronaut
    # The same public id overwritten with other bytes (its stored file keeps its name): its
    # renders are of the new bytes, not what was rendered for that name before.
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), public_id="memo/a", overwrite=True, invalidate=True)
    assert _derived_bytes("memo/a") == coffee


def _signed_explicit(settings: Settings, public_id: str) -> dict[str, Any]:
    params: dict[str, Any] = {"public_id": public_id, "type": "upload", "timestamp": int(time.time()),
                              "eager": "c_thumb,g_faces,h_96,w_96/jpg|c_limit,h_320,w_320/png"}
    params["signature"] = cloudinary.utils.api_sign_request(params, settings.api_secret)
    params["api_key"] = settings.api_key
    return params


def test_a_render_is_made_once_per_bytes_and_transformation(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(data_dir=tempfile.mkdtemp())
    app = create_app(settings)
    client = app.test_client()
    applied: list[str] = []
    real_apply = transform.apply

    def counting_apply(image: Any, parsed: transform.Transformation, *args: Any) -> Any:
        applied.append(parsed.text)
        return real_apply(image, parsed, *args)

    monkeypatch.setattr(transform, "apply", counting_apply)
    data = (photos / "astronaut.jpg").read_bytes()
    for public_id in ("one", "two", "three"):
        params = {"public_id": public_id, "timestamp": int(time.time())}
        params["signature"] = cloudinary.utils.api_sign_request(params, settings.api_secret)
        params["api_key"] = settings.api_key
        upload = client.post(f"/v1_1/{settings.cloud_name}/image/upload",
                             data={**params, "file": (io.BytesIO(data), "astronaut.jpg")})
        assert upload.status_code == 200, upload.get_json()
        answer = client.post(f"/v1_1/{settings.cloud_name}/image/explicit", data=_signed_explicit(settings, public_id))
        assert answer.status_code == 200, answer.get_json()
        assert [entry["width"] for entry in answer.get_json()["eager"]] == [96, 320]
    app.extensions[EXTENSION_KEY].shutdown()
    assert sorted(applied) == ["c_limit,h_320,w_320", "c_thumb,g_faces,h_96,w_96"]


def test_memo_is_bounded_by_bytes_least_recently_used_out_first() -> None:
    memo = RenderMemo(max_bytes=100)
    memo.put(("a", "image", "t", "jpg"), (b"x" * 20, 1, 1))
    memo.put(("b", "image", "t", "jpg"), (b"x" * 20, 1, 1))
    memo.put(("c", "image", "t", "jpg"), (b"x" * 20, 1, 1))
    assert memo.get(("a", "image", "t", "jpg")) is not None  # now the most recent
    memo.put(("d", "image", "t", "jpg"), (b"x" * 20, 1, 1))
    memo.put(("e", "image", "t", "jpg"), (b"x" * 20, 1, 1))
    memo.put(("f", "image", "t", "jpg"), (b"x" * 20, 1, 1))  # 120 bytes: the oldest, b, goes
    assert memo.get(("b", "image", "t", "jpg")) is None
    assert all(memo.get((k, "image", "t", "jpg")) is not None for k in "acdef")
    memo.put(("big", "image", "t", "jpg"), (b"x" * 30, 1, 1))  # over a quarter of the bound: not kept
    assert memo.get(("big", "image", "t", "jpg")) is None
