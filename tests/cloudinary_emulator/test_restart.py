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
from tests.cloudinary_emulator.conftest import detected_faces


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
    assert resource["faces"] == detected_faces("astronaut.jpg")
    assert resource["version"] == uploaded["version"]
    assert [r["public_id"] for r in cloudinary.api.resources_by_tag("kept")["resources"]] == ["keep/me"]
    original = requests.get(uploaded["url"], timeout=10)
    assert original.status_code == 200
    assert original.content == (photos / "astronaut.jpg").read_bytes()
    derived = requests.get(eager["url"], timeout=10)
    assert derived.status_code == 200
    assert Image.open(io.BytesIO(derived.content)).size == (64, 64)
    assert emu.stats()["calls"]["delivery"] == 2  # counters restart from zero


V0_SCHEMA = """
CREATE TABLE assets (seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL,
    public_id TEXT NOT NULL, asset_id TEXT NOT NULL, version INTEGER NOT NULL,
    version_id TEXT NOT NULL, created_at TEXT NOT NULL, original_filename TEXT,
    file_name TEXT NOT NULL, info TEXT NOT NULL, UNIQUE (type, public_id));
CREATE TABLE tags (type TEXT NOT NULL, public_id TEXT NOT NULL, tag TEXT NOT NULL,
    PRIMARY KEY (type, public_id, tag));
CREATE INDEX tags_by_tag ON tags (tag);
CREATE TABLE derived (key TEXT PRIMARY KEY, type TEXT NOT NULL, public_id TEXT NOT NULL,
    transformation TEXT NOT NULL, format TEXT NOT NULL, width INTEGER NOT NULL,
    height INTEGER NOT NULL, bytes INTEGER NOT NULL, file_name TEXT NOT NULL);
CREATE INDEX derived_by_asset ON derived (type, public_id);
"""


def test_data_dir_of_the_first_schema_is_migrated(tmp_path: Path) -> None:
    """A data dir written before resource types existed opens with every asset and tag."""
    import json
    import sqlite3

    from cloudinary_emulator.analysis import ImageInfo
    from cloudinary_emulator.storage import Listing, Storage

    info = json.dumps(ImageInfo(width=1, height=1, format="jpg", bytes=3, etag="e").to_dict())
    db = sqlite3.connect(tmp_path / "index.sqlite3")
    db.executescript(V0_SCHEMA)
    for n, created in ((1, "2024-01-01T00:00:00Z"), (2, "2024-01-02T00:00:00Z")):
        db.execute("INSERT INTO assets (type, public_id, asset_id, version, version_id, created_at,"
                   " file_name, info) VALUES ('upload', ?, 'a', 1, 'v', ?, 'f.jpg', ?)",
                   (f"p{n}", created, info))
        db.execute("INSERT INTO tags VALUES ('upload', ?, 'album')", (f"p{n}",))
    db.commit()
    db.close()
    storage = Storage(tmp_path)
    try:
        asset = storage.get("upload", "p1")
        assert asset is not None and asset.resource_type == "image" and asset.tags == ["album"]
        page, more = storage.list(Listing("image", tag="album"))
        assert [a.public_id for a in page] == ["p2", "p1"] and not more
    finally:
        storage.close()
    reopened = Storage(tmp_path)  # and a second open leaves the migrated schema alone
    try:
        assert reopened.get("upload", "p2") is not None
    finally:
        reopened.close()
