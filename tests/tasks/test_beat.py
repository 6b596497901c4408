"""The beat's tasks, run in-process on the real database and Redis: the stuck-image sweep
(re-enqueue, then fail after three sweeps — never forever) and the periodic reconcile of
albums whose forms went out."""
from __future__ import annotations

from datetime import timedelta

import pytest
from celery.signals import before_task_publish

from common import db
from common.coordination import active_albums
from common.models import Image, utcnow
from tasks.pipeline import reconcile_active, sweep_stuck
from tests.conftest import SEED_ALBUM


@pytest.fixture
def published():
    sent: list[tuple[str, tuple]] = []

    def record(sender=None, body=None, **_):
        sent.append((sender, tuple(body[0]) if body else ()))

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


def _age(image_id: int, hours: float = 1) -> None:
    with db.session_scope() as session:
        session.get(Image, image_id).updated_at = utcnow() - timedelta(hours=hours)


def test_stuck_images_are_requeued_then_failed_after_three_sweeps(seed_album, published):
    with db.session_scope() as session:
        stuck = Image(album_id=SEED_ALBUM, public_id="stuck", metadata_status="done", thumbnails_status="pending")
        fresh = Image(album_id=SEED_ALBUM, public_id="fresh", metadata_status="pending", thumbnails_status="pending")
        session.add_all([stuck, fresh])
        session.flush()
        stuck_id = stuck.id
    _age(stuck_id)
    sweep_stuck.run()
    assert ("album.generate_thumbnails", (stuck_id,)) in published
    assert not any(args == (stuck_id + 1,) for _, args in published)  # the fresh one is left alone
    for _ in range(3):
        _age(stuck_id)
        sweep_stuck.run()
    with db.session_scope() as session:
        image = session.get(Image, stuck_id)
        assert image.thumbnails_status == "failed"
        assert "stuck" in image.error
        assert image.status == "failed"
    requeues = [args for name, args in published if name == "album.generate_thumbnails"]
    assert requeues == [(stuck_id,)] * 3


def test_albums_with_forms_out_are_reconciled_by_the_beat(seed_album, published):
    active_albums.touch(SEED_ALBUM)
    reconcile_active.run()
    assert ("album.reconcile", (SEED_ALBUM,)) in published


def test_a_failed_cloudinary_destroy_is_retried_by_the_sweep(seed_album, published):
    with db.session_scope() as session:
        gone = Image(album_id=SEED_ALBUM, public_id="gone", metadata_status="done", thumbnails_status="done",
                     deleted_at=utcnow() - timedelta(hours=1))
        done = Image(album_id=SEED_ALBUM, public_id="done", metadata_status="done", thumbnails_status="done",
                     deleted_at=utcnow() - timedelta(hours=1), destroyed_at=utcnow())
        session.add_all([gone, done])
        session.flush()
        gone_id, done_id = gone.id, done.id
    sweep_stuck.run()
    destroys = [args for name, args in published if name == "album.destroy_image"]
    assert destroys == [(gone_id,)]
