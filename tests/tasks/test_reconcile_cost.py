"""Reconcile costs what is new, not what the album holds: after a full walk, ten new uploads
cost one or two Admin API calls whatever the album's size (the emulator over HTTP with the
official SDK; the task's page runs in-process, one page per call as a worker would run them)."""
from __future__ import annotations

import time
from typing import Iterator

import pytest

from cloudinary_emulator.testing import EmulatorProcess
from common import db
from common.models import Album, Image
from tasks import pipeline as tasks
from tests.conftest import SEED_ALBUM


@pytest.fixture
def emulator(tmp_path, monkeypatch) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path / "cloudinary") as emu:
        settings = tasks.get_settings().with_overrides(cloudinary_url=emu.cloudinary_url, admin_budget_reserve=0)
        monkeypatch.setattr(tasks, "get_settings", lambda: settings)
        yield emu


def _admin_calls(emu: EmulatorProcess) -> int:
    return emu.stats()["calls"]["admin_resources_by_tag"]


def _reconcile_to_the_end(album_id: str, full: bool = False) -> None:
    """Run reconcile pages until the run is complete (what the queue does with its own messages)."""
    for _ in range(1000):
        tasks.reconcile.run(album_id, full=full)
        with db.session_scope() as session:
            if session.get(Album, album_id).reconcile_progress is None:
                return
    raise AssertionError("reconcile never finished")


def _known(album_id: str, public_ids: list[str]) -> None:
    with db.session_scope() as session:
        session.bulk_save_objects([
            Image(album_id=album_id, public_id=pid, metadata_status="done", thumbnails_status="done")
            for pid in public_ids
        ])


def test_ten_new_uploads_cost_at_most_two_admin_calls_in_an_album_of_2000(seed_album, emulator) -> None:
    size = 2000
    now = time.time()
    # An album filled over the last hours, all of it already in the database.
    emulator.seed(size, tags=[SEED_ALBUM], prefix="old/", type="authenticated", start=now - size * 5, interval=5)
    _known(SEED_ALBUM, [f"old/{i}" for i in range(size)])

    before = _admin_calls(emulator)
    _reconcile_to_the_end(SEED_ALBUM, full=True)
    full_walk = _admin_calls(emulator) - before
    assert full_walk == size // 500  # the first reconcile walks the whole tag, 500 per page

    emulator.seed(10, tags=[SEED_ALBUM], prefix="new/", type="authenticated", start=time.time(), interval=0.1)
    before = _admin_calls(emulator)
    _reconcile_to_the_end(SEED_ALBUM)
    incremental = _admin_calls(emulator) - before
    print(f"\nalbum of {size}: full walk {full_walk} Admin calls, after 10 new uploads {incremental}")
    assert incremental <= 2
    with db.session_scope() as session:
        new = session.query(Image).filter(Image.album_id == SEED_ALBUM, Image.public_id.like("new/%")).count()
    assert new == 10  # and every new photo was found
