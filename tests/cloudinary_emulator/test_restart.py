"""State survives a restart: assets, tags, derived images; and the CLI's printed URL."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import cloudinary
import cloudinary.api
import cloudinary.uploader
import pytest
import requests
from PIL import Image

from cloudinary_emulator.testing import EmulatorProcess


@pytest.fixture
def own_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path / "data", cloud_name="restartcloud", api_key="42",
                         api_secret="s3cret", latency_ms=1) as emu:
        cloudinary.reset_config()
        cloudinary.config(**emu.cloudinary_config())
        yield emu
    cloudinary.reset_config()


def test_restart_keeps_assets(own_emulator: EmulatorProcess, photos: Path) -> None:
    emu = own_emulator
    assert emu.cloudinary_url == (
        f"cloudinary://42:s3cret@restartcloud?upload_prefix=http://127.0.0.1:{emu.port}"
        f"&cname=127.0.0.1:{emu.port}&secure=false")
    assert emu.get_faults()["latency_ms"] == 1.0  # fault kwargs become start-up flags
    uploaded = cloudinary.uploader.upload(str(photos / "astronaut.jpg"), public_id="keep/me",
                                          type="authenticated", tags=["kept"])
    eager = cloudinary.uploader.explicit("keep/me", type="authenticated",
                                         eager=[{"width": 64, "crop": "scale"}])["eager"][0]
    port = emu.port
    emu.restart()
    assert emu.port == port
    resource = cloudinary.api.resource("keep/me", type="authenticated", faces=True, phash=True)
    assert resource["faces"] == [[177, 67, 95, 95]]
    assert resource["version"] == uploaded["version"]
    assert [r["public_id"] for r in cloudinary.api.resources_by_tag("kept")["resources"]] == ["keep/me"]
    original = requests.get(uploaded["url"], timeout=10)
    assert original.status_code == 200
    assert original.content == (photos / "astronaut.jpg").read_bytes()
    derived = requests.get(eager["url"], timeout=10)
    assert derived.status_code == 200
    assert Image.open(io.BytesIO(derived.content)).size == (64, 64)
    assert emu.stats()["calls"]["delivery"] == 2  # counters restart from zero
