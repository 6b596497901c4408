"""Album views on the real Redis and the real database, in-process: what counts as a view, the
window (time-travelled), the answer (database + pending), and folding exactly once through
concurrent runs, a database that is down, and runs that die at each step."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import pytest
import redis
import time_machine
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from common import db, tokens, views
from common.models import Album, Organization, ViewFold
from tests.conftest import SEED_ALBUM, SEED_ORG, TEST_JWT_SECRET
from tests.e2e.stack import free_port
from web import create_app

WINDOW = 1800


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def app(settings):
    return create_app(settings)


def db_views(album_id: str = SEED_ALBUM) -> int:
    with db.session_scope() as session:
        return session.get(Album, album_id).views_count


def read(app, user: str, abilities: tuple[str, ...] = ("read",), method: str = "GET", album_id: str = SEED_ALBUM):
    token = tokens.issue_session(user, {album_id: abilities}, TEST_JWT_SECRET, 14400)
    response = app.test_client().open(f"/api/v1/albums/{album_id}", method=method,
                                      headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.data
    return response.json if method == "GET" else None


def fold(r: redis.Redis, now: float | None = None) -> views.FoldReport:
    return views.fold(r, db.session_scope, now)


# -- what a view is ------------------------------------------------------------------------------


@pytest.mark.parametrize(("abilities", "user", "is_view"), [
    ({"read"}, "u1", True),
    ({"read", "manage"}, "u1", True),
    ({"read", "image_upload"}, "u1", False),  # an uploader's read refreshes its upload form
    ({"image_upload"}, "u1", False),
    ({"manage"}, "u1", False),
    ({"read"}, "", False),  # a session naming no user cannot be counted once per user
])
def test_who_counts(abilities, user, is_view):
    claims = {"user_id": user} if user else {}
    assert views.viewer(claims, abilities) == ("u1" if is_view else None)


def test_readers_count_once_each_and_see_their_view_at_once(app, seed_album, r):
    assert read(app, "alice")["views_count"] == 1  # pending, shown before any fold
    assert read(app, "alice")["views_count"] == 1
    assert read(app, "bob")["views_count"] == 2
    assert db_views() == 0  # nothing written to the database on the read path
    assert fold(r).views == 2
    assert db_views() == 2
    assert read(app, "alice")["views_count"] == 2  # database + nothing pending
    assert read(app, "carol")["views_count"] == 3


def test_uploaders_head_requests_and_upload_done_count_no_view(app, seed_album, r):
    read(app, "alice")
    uploader = read(app, "owner", ("read", "image_upload", "manage"))
    assert uploader["upload_form"] is not None and uploader["views_count"] == 1  # sees the pending view
    read(app, "bob", method="HEAD")
    token = tokens.issue_session("owner", {SEED_ALBUM: ["image_upload"]}, TEST_JWT_SECRET, 3600)
    done = app.test_client().post(f"/api/v1/albums/{SEED_ALBUM}/upload_done", headers={"Authorization": f"Bearer {token}"})
    assert done.status_code == 200 and done.json["views_count"] == 1
    assert fold(r).views == 1
    assert db_views() == 1


def test_counting_off_records_nothing(settings, seed_album, r):
    app = create_app(settings.with_overrides(count_views=False))
    assert read(app, "alice")["views_count"] == 0
    assert not list(r.scan_iter(views.PREFIX + "*"))
    assert fold(r).views == 0


# -- the window ----------------------------------------------------------------------------------


def test_one_view_per_user_per_window_time_travelled(app, seed_album):
    with time_machine.travel(1_900_000_000, tick=True) as traveller:
        assert read(app, "alice")["views_count"] == 1
        traveller.shift(WINDOW - 60)  # 29 minutes later: the same view
        assert read(app, "alice")["views_count"] == 1
        traveller.shift(61)  # 30 min 1 s after the counted view: a new one
        assert read(app, "alice")["views_count"] == 2
        traveller.shift(WINDOW - 1)  # the window restarts at the view just counted
        assert read(app, "alice")["views_count"] == 2
        assert read(app, "bob")["views_count"] == 3


def test_the_window_key_expires_with_the_window(r, seed_album):
    views.read_album(r, SEED_ALBUM, "alice", window=WINDOW)
    key = views.seen_key(SEED_ALBUM, "alice")
    assert WINDOW * 1000 - 2000 < r.pttl(key) <= WINDOW * 1000  # Redis forgets the user with the window
    assert views.seen_key(SEED_ALBUM, "alice") != views.seen_key("other", "alice")
    assert views.seen_key(SEED_ALBUM, "alice") != views.seen_key(SEED_ALBUM, "bob")
    assert len(views.seen_key(SEED_ALBUM, "x" * 5000)) < 80  # a huge user id makes a short key


def test_a_real_short_window_expires(r, seed_album):
    assert views.read_album(r, SEED_ALBUM, "alice", window=0.3).counted
    assert not views.read_album(r, SEED_ALBUM, "alice", window=0.3).counted
    time.sleep(0.35)
    assert r.get(views.seen_key(SEED_ALBUM, "alice")) is None  # expired in Redis' own time
    assert views.read_album(r, SEED_ALBUM, "alice", window=0.3).counted


# -- folding -------------------------------------------------------------------------------------


def _albums(n: int) -> list[str]:
    ids = [f"VIEWS{i:03d}" for i in range(n)]
    with db.session_scope() as session:
        session.add(Organization(id=SEED_ORG, name="Seed"))
        session.flush()
        session.add_all(Album(id=album_id, organization_id=SEED_ORG) for album_id in ids)
    return ids


def test_concurrent_folds_while_readers_read_count_every_view_once(r):
    albums = _albums(4)
    users = 60
    stop = threading.Event()
    reports: list[views.FoldReport] = []

    def folder() -> None:
        while not stop.is_set():
            reports.append(fold(r))

    def reader(user: int) -> None:
        for album_id in albums:
            for _ in range(3):  # re-reads within the window are no new view
                views.read_album(r, album_id, f"user-{user}", WINDOW)

    with ThreadPoolExecutor(4) as folders:
        for _ in range(4):
            folders.submit(folder)
        with ThreadPoolExecutor(8) as readers:
            list(readers.map(reader, range(users)))
        stop.set()
    fold(r)
    with db.session_scope() as session:
        counts = dict(session.execute(select(Album.id, Album.views_count).where(Album.id.in_(albums))).all())
    assert counts == {album_id: users for album_id in albums}
    folded = sum(rep.views for rep in reports)
    print(f"\n{len(reports)} concurrent fold runs, {sum(rep.folds for rep in reports)} folds, {folded} views")
    assert not r.exists(views.PENDING_KEY) and not r.zcard(views.FOLDS_KEY)


def test_two_runs_applying_one_fold_at_once_apply_it_once(r, seed_album):
    for user in ("a", "b", "c"):
        views.read_album(r, SEED_ALBUM, user, WINDOW)
    fold_id = views.take_pending(r)
    counts = views.fold_counts(r, fold_id)
    start = threading.Barrier(2)

    def apply() -> bool:
        start.wait()
        try:
            with db.session_scope() as session:
                return views.apply_fold(session, fold_id, counts)
        except IntegrityError:
            return False

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: apply(), range(2)))
    assert sorted(results) == [False, True]
    assert db_views() == 3


@pytest.fixture
def database_down() -> Iterator:
    """A session factory whose database refuses connections, as a stopped server does."""
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone", connect_args={"connect_timeout": 1})
    factory = sessionmaker(engine)

    @contextmanager
    def scope() -> Iterator[Session]:
        with factory() as session, session.begin():
            yield session

    yield scope
    engine.dispose()


def test_a_database_down_after_the_take_loses_nothing(app, seed_album, r, database_down):
    read(app, "alice")
    read(app, "bob")
    with pytest.raises(OperationalError):
        views.fold(r, database_down)
    assert db_views() == 0
    assert read(app, "carol")["views_count"] == 3  # the failed fold's views still show
    with pytest.raises(OperationalError):  # still down: the failed fold is retried first...
        views.fold(r, database_down)
    assert r.zcard(views.FOLDS_KEY) == 1  # ...and no new fold is taken meanwhile
    report = fold(r)  # back up: the next run applies both, once
    assert (report.folds, report.views) == (2, 3)
    assert db_views() == 3
    assert read(app, "dave")["views_count"] == 4


def test_a_run_killed_after_the_take_is_taken_over_after_its_lease(app, seed_album, r):
    read(app, "alice")
    read(app, "bob")
    views.take_pending(r)  # ...and the worker is SIGKILLed here
    read(app, "carol")
    assert read(app, "dave")["views_count"] == 4  # the orphan fold still shows in the answer
    assert fold(r).views == 2  # within the lease: only what is pending now
    assert db_views() == 2
    report = fold(r, now=time.time() + views.FOLD_LEASE + 1)
    assert (report.folds, report.views, report.already_applied) == (1, 2, 0)
    assert db_views() == 4
    assert not r.zcard(views.FOLDS_KEY)


def test_a_run_killed_after_its_commit_is_not_applied_twice(app, seed_album, r):
    read(app, "alice")
    read(app, "bob")
    fold_id = views.take_pending(r)
    with db.session_scope() as session:
        assert views.apply_fold(session, fold_id, views.fold_counts(r, fold_id))
    # ...and the worker is SIGKILLed here, before dropping the fold from Redis.
    report = fold(r, now=time.time() + views.FOLD_LEASE + 1)
    assert (report.folds, report.already_applied) == (0, 1)
    assert db_views() == 2
    assert not r.exists(views.FOLD_PREFIX + fold_id) and not r.zcard(views.FOLDS_KEY)


def test_old_fold_markers_are_pruned(r, seed_album):
    from datetime import timedelta

    from common.models import utcnow

    with db.session_scope() as session:
        session.add(ViewFold(id="old", folded_at=utcnow() - views.FOLD_MARKER_RETENTION - timedelta(minutes=1)))
    views.read_album(r, SEED_ALBUM, "alice", WINDOW)
    fold(r)
    with db.session_scope() as session:
        assert session.get(ViewFold, "old") is None
        assert session.scalar(select(func.count()).select_from(ViewFold)) >= 1  # this run's own marker


# -- the read path's connections ------------------------------------------------------------------


def test_thread_connections_count_like_the_client_and_survive_a_redis_restarted_empty(tmp_path, seed_album):
    import signal

    import services

    port = free_port()
    url, proc = services.start_private_redis(tmp_path / "redis", port)
    client = redis.Redis.from_url(url, socket_timeout=0.8, socket_connect_timeout=0.8, retry=Retry(NoBackoff(), 0))
    connections = views.ThreadConnections(lambda: client)
    try:
        assert views.read_album(connections, SEED_ALBUM, "alice", WINDOW) == views.AlbumRead(True, 1)
        assert views.read_album(client, SEED_ALBUM, "alice", WINDOW) == views.AlbumRead(False, 1)
        assert views.read_album(connections, SEED_ALBUM, "bob", WINDOW) == views.AlbumRead(True, 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        with pytest.raises(redis.ConnectionError):  # refused at once: the breaker takes it from here
            views.read_album(connections, SEED_ALBUM, "carol", WINDOW)
        url, proc = services.start_private_redis(tmp_path / "redis", port)
        assert views.read_album(connections, SEED_ALBUM, "carol", WINDOW) == views.AlbumRead(True, 1)
        # Restarted again while the connection is idle: its socket is dead, the script forgotten.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        url, proc = services.start_private_redis(tmp_path / "redis", port)
        assert views.read_album(connections, SEED_ALBUM, "dave", WINDOW) == views.AlbumRead(True, 1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_each_thread_has_its_own_connection(r, seed_album):
    connections = views.ThreadConnections(lambda: r)
    before = r.info("clients")["connected_clients"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: views.read_album(connections, SEED_ALBUM, f"user-{i}", WINDOW).counted, range(40)))
        assert r.info("clients")["connected_clients"] - before <= 4
    assert all(results)


# -- the breaker ---------------------------------------------------------------------------------


def redis_down() -> None:
    raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_skips_a_dead_redis_until_one_probe_finds_it_back(redis_url):
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    alive = redis.Redis.from_url(redis_url)
    clock = Clock()
    breaker = views.Breaker(cooldown=5, clock=clock)
    calls: list[str] = []

    def ping(client: redis.Redis, name: str) -> str:
        calls.append(name)
        client.ping()
        return name

    assert breaker.call(lambda: ping(dead, "dead"), "fallback") == "fallback"
    assert not breaker.closed
    clock.now = 4.9
    assert breaker.call(lambda: ping(alive, "alive"), "fallback") == "fallback"
    assert calls == ["dead"]  # not even tried within the cooldown
    clock.now = 5.1
    assert breaker.call(lambda: ping(dead, "dead"), "fallback") == "fallback"  # the probe fails: 5 s more
    clock.now = 9
    assert breaker.call(lambda: ping(alive, "alive"), "fallback") == "fallback"
    clock.now = 10.2
    assert breaker.call(lambda: ping(alive, "alive"), "fallback") == "alive"
    assert breaker.closed
    assert calls == ["dead", "dead", "alive"]


def test_while_one_probe_waits_the_other_threads_skip(redis_url):
    clock = Clock()
    breaker = views.Breaker(cooldown=5, clock=clock)
    breaker.call(redis_down, None)
    clock.now = 6
    probing, release = threading.Event(), threading.Event()

    def slow_probe() -> str:
        probing.set()
        release.wait(5)
        return "probe"

    with ThreadPoolExecutor(1) as pool:
        probe = pool.submit(breaker.call, slow_probe, "fallback")
        probing.wait(5)
        assert breaker.call(lambda: "other", "fallback") == "fallback"
        release.set()
        assert probe.result() == "probe"
    assert breaker.call(lambda: "other", "fallback") == "other"


def test_a_probe_failing_for_another_reason_lets_the_next_call_probe():
    clock = Clock()
    breaker = views.Breaker(cooldown=5, clock=clock)
    breaker.call(redis_down, None)
    clock.now = 6

    def bug() -> None:
        raise KeyError("not Redis")

    with pytest.raises(KeyError):
        breaker.call(bug, None)
    assert breaker.call(lambda: "answer", "fallback") == "answer"
    assert breaker.closed
