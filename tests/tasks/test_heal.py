"""The heal task, run in-process on the real database and Redis: what it sends again, and
when. (tests/e2e/test_chaos.py runs it on real workers under real faults.)"""
from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from celery.signals import before_task_publish

from common import db
from common.coordination import BrokerEpoch, heal_lease
from common.models import Album, Image, utcnow
from tasks.pipeline import heal
from tests.conftest import SEED_ALBUM


@pytest.fixture
def published():
    sent: list[tuple[str, tuple]] = []

    def record(sender=None, body=None, **_):
        sent.append((sender, tuple(body[0]) if body else ()))

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


@pytest.fixture
def known_broker(redis_url):
    """Heal has already seen this Redis: no broker-loss sweep unless a test stages one."""
    BrokerEpoch(redis.Redis.from_url(redis_url)).changed()


def _add(**columns) -> int:
    with db.session_scope() as session:
        image = Image(album_id=SEED_ALBUM, **columns)
        session.add(image)
        session.flush()
        return image.id


def _ago(seconds: float):
    return utcnow() - timedelta(seconds=seconds)


def test_overdue_stages_are_sent_again_and_fresh_ones_left_alone(seed_album, known_broker, published):
    overdue = _add(public_id="overdue", metadata_status="done", thumbnails_status="pending",
                   due_at=_ago(1), pending_since=_ago(60))
    fresh = _add(public_id="fresh", metadata_status="pending", thumbnails_status="pending",
                 due_at=utcnow() + timedelta(seconds=30), pending_since=_ago(1))
    heal.run()
    stages = [(name, args) for name, args in published if name in ("album.fetch_metadata", "album.generate_thumbnails")]
    assert stages == [("album.generate_thumbnails", (overdue,))]
    assert fresh not in [args[0] for _, args in stages]


def test_a_lost_recount_is_made_good(seed_album, known_broker, published):
    _add(public_id="counted-late", metadata_status="done", thumbnails_status="done")
    with db.session_scope() as session:
        session.get(Album, SEED_ALBUM).counted_at = _ago(3600)
    heal.run()
    assert ("album.recount", (SEED_ALBUM,)) in published


def test_an_owed_reconcile_is_asked_for(seed_album, known_broker, published):
    with db.session_scope() as session:
        session.get(Album, SEED_ALBUM).reconcile_requested_at = _ago(5)
    heal.run()
    assert ("album.reconcile", (SEED_ALBUM,)) in published


def test_a_broker_that_lost_its_data_gets_everything_pending_and_active_albums_reconciled(seed_album, redis_url, published):
    pending = _add(public_id="queued-then-lost", metadata_status="pending", thumbnails_status="pending",
                   due_at=utcnow() + timedelta(seconds=25), pending_since=_ago(5))
    with db.session_scope() as session:
        album = session.get(Album, SEED_ALBUM)
        album.form_issued_at = _ago(60)
        album.last_reconciled_at = _ago(10)  # listed just now: only a broker loss lists it again
    redis.Redis.from_url(redis_url).delete(BrokerEpoch.KEY)  # what a restart without persistence leaves
    heal.run()
    assert ("album.fetch_metadata", (pending,)) in published
    assert ("album.generate_thumbnails", (pending,)) in published
    assert ("album.reconcile", (SEED_ALBUM,)) in published
    with db.session_scope() as session:
        assert session.get(Album, SEED_ALBUM).reconcile_requested_at is not None  # owed, durably


def test_a_failed_cloudinary_destroy_is_tried_again(seed_album, known_broker, published):
    gone = _add(public_id="gone", metadata_status="done", thumbnails_status="done", deleted_at=_ago(3600))
    _add(public_id="done", metadata_status="done", thumbnails_status="done", deleted_at=_ago(3600), destroyed_at=utcnow())
    heal.run()
    assert [args for name, args in published if name == "album.destroy_image"] == [(gone,)]


def test_one_heal_at_a_time(seed_album, known_broker, published):
    _add(public_id="overdue", metadata_status="pending", thumbnails_status="pending", due_at=_ago(1), pending_since=_ago(9))
    assert heal_lease.acquire(30)  # another host is healing
    try:
        heal.run()
    finally:
        heal_lease.release()
    assert published == []


def test_an_index_task_lost_with_its_message_is_sent_again(seed_album, known_broker, published):
    """A photo whose pHash was stored a minute ago and is still not in the duplicates index (its
    album.index_duplicates message died) gets the task again; one stored just now is left to its
    own task still in the queue; one already indexed is not sent."""
    from sqlalchemy import update

    from common import duplicates
    from tasks.pipeline import index_duplicates

    lost = _add(public_id="lost", metadata_status="done", thumbnails_status="done", phash="f0f0f0f0f0f0f0f0")
    indexed = _add(public_id="indexed", metadata_status="done", thumbnails_status="done", phash="f0f0f0f0f0f0f0f1")
    queued = _add(public_id="queued", metadata_status="done", thumbnails_status="done", phash="0f0f0f0f0f0f0f0f")
    with db.session_scope() as session:
        duplicates.index_image(session, indexed)
        session.execute(update(Image).where(Image.id.in_([lost, indexed])).values(updated_at=_ago(60)))
    heal.run()
    assert [args for name, args in published if name == "album.index_duplicates"] == [(lost,)]
    index_duplicates.run(lost)
    with db.session_scope() as session:
        assert duplicates.groups(session, SEED_ALBUM, 1) == [sorted([lost, indexed])]
    assert queued not in [args[0] for name, args in published if name == "album.index_duplicates"]
