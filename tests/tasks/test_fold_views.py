"""The fold task as the beat schedules it, run in-process on the real Redis and database (the
real beat and workers run it in tests/e2e/test_views.py)."""
from __future__ import annotations

import redis

import celeryconfig
from common import db, views
from common.models import Album
from tasks.views import fold_views
from tests.conftest import SEED_ALBUM
from worker.app import app


def test_the_beat_folds_views_every_interval_on_the_fast_queue(settings):
    entry = celeryconfig.beat_schedule["fold-album-views"]
    assert entry["task"] == fold_views.name == "album.fold_views"
    assert entry["schedule"] == settings.view_fold_interval
    assert entry["options"]["expires"] >= 1  # a stale run is dropped, not piled up
    assert app.amqp.router.route({}, fold_views.name)["queue"].name == "fast"
    assert fold_views.time_limit < views.FOLD_LEASE  # a live run is never taken over


def test_the_task_folds_pending_views_into_the_database(seed_album, redis_url):
    r = redis.Redis.from_url(redis_url)
    for user in ("alice", "bob", "alice"):
        views.read_album(r, SEED_ALBUM, user, window=1800)
    fold_views.run()
    with db.session_scope() as session:
        assert session.get(Album, SEED_ALBUM).views_count == 2
    assert views.read_album(r, SEED_ALBUM, None, window=1800).pending == 0
