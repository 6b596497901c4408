"""SQLite writers wait in the writer queue (common/sqlite_writers.py): a writer blocked by
another process's open write transaction goes on as soon as that one commits, readers never
wait, and a writer that could only wait for itself still gets SQLite's error, not a hang.

Each test has its own database file (SQLite whatever TEST_DATABASE_URL says: the queue is
SQLite's alone), written by real processes where processes matter."""
from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from common import db, sqlite_writers


def _engine(path: Path):  # type: ignore[no-untyped-def]
    engine = db.make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (writer TEXT, n INTEGER)"))
    return engine


def _hold_write(path: str, started: Any, seconds: float, committed_at: Any) -> None:
    """Another process: opens a write transaction, keeps it ``seconds``, commits, notes when."""
    engine = db.make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES ('holder', 0)"))
        started.set()
        time.sleep(seconds)
    committed_at.value = time.time()
    engine.dispose()


def _holder(path: Path, seconds: float) -> tuple[multiprocessing.Process, Any]:
    """A process holding a write transaction on ``path`` for ``seconds`` (open on return), and
    the shared value its commit time lands in."""
    started, committed_at = multiprocessing.Event(), multiprocessing.Value("d", 0.0)
    process = multiprocessing.Process(target=_hold_write, args=(str(path), started, seconds, committed_at))
    process.start()
    assert started.wait(20)
    return process, committed_at


def _write_many(path: str, name: str, count: int) -> None:
    engine = db.make_engine(f"sqlite:///{path}")
    for n in range(count):
        with engine.begin() as conn:
            conn.execute(text("SELECT COUNT(*) FROM t")).scalar()
            conn.execute(text("INSERT INTO t VALUES (:w, :n)"), {"w": name, "n": n})
    engine.dispose()


def test_a_writer_waits_for_the_other_process_and_goes_on_when_it_commits(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "q.db")
    holder, _ = _holder(tmp_path / "q.db", 0.8)
    try:
        began = time.monotonic()
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES ('waiter', 1)"))
        waited = time.monotonic() - began
    finally:
        holder.join(20)
    assert holder.exitcode == 0
    assert waited > 0.3  # it did wait for the holder's transaction
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT writer FROM t")).scalars()) == ["holder", "waiter"]
    engine.dispose()


def test_the_waiting_writer_starts_when_the_holder_commits_not_at_its_next_poll(tmp_path: Path) -> None:
    """SQLite's busy handler, after a second of waiting, looks again every 100 ms: the waiter
    would start 50 ms after the commit on average (measured without the queue: 8-88 ms). The
    queue wakes it at the commit."""
    engine = _engine(tmp_path / "w.db")
    lags = []
    # Commits at five points of the busy handler's 100 ms cycle: its lags would average ~50 ms.
    for hold in (1.0, 1.02, 1.04, 1.06, 1.08):
        holder, committed_at = _holder(tmp_path / "w.db", hold)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES ('waiter', 1)"))
            got_in = time.time()
        holder.join(20)
        lags.append(got_in - committed_at.value)
    assert sum(lags) / len(lags) < 0.02, lags
    engine.dispose()


def test_readers_do_not_wait_for_an_open_write_transaction(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "r.db")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES ('before', 0)"))
    holder, _ = _holder(tmp_path / "r.db", 2.0)
    try:
        began = time.monotonic()
        with engine.connect() as conn:
            seen = conn.execute(text("SELECT writer FROM t")).scalars().all()
        assert time.monotonic() - began < 1.0
    finally:
        holder.join(20)
    assert seen == ["before"]  # the holder's row is not committed yet
    engine.dispose()


def test_many_writers_in_processes_and_threads_all_commit(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    engine = _engine(tmp_path / "m.db")
    processes = [multiprocessing.Process(target=_write_many, args=(path, f"p{i}", 40)) for i in range(3)]
    threads = [threading.Thread(target=_write_many, args=(path, f"t{i}", 40)) for i in range(4)]
    for worker in (*processes, *threads):
        worker.start()
    for worker in (*processes, *threads):
        worker.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM t")).scalar() == 7 * 40
    assert not sqlite_writers.queue_for(path).thread_lock.locked()
    engine.dispose()


def test_the_turn_is_given_back_when_a_write_fails(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "f.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE UNIQUE INDEX ix_n ON t (n)"))
        conn.execute(text("INSERT INTO t VALUES ('a', 1)"))
    with pytest.raises(Exception, match="UNIQUE"):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES ('b', 1)"))
    assert not sqlite_writers.queue_for(str(tmp_path / "f.db")).thread_lock.locked()
    with engine.begin() as conn:  # and the next writer gets it at once
        conn.execute(text("INSERT INTO t VALUES ('c', 2)"))
    engine.dispose()


def test_a_writer_that_would_wait_for_itself_gets_sqlites_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two connections of one thread: the second writes while the first holds the turn. It
    waits WAIT_LIMIT for the queue, then SQLite's own busy timeout, then fails as before."""
    monkeypatch.setattr(sqlite_writers, "WAIT_LIMIT", 0.2)
    path = str(tmp_path / "s.db")
    _engine(tmp_path / "s.db").dispose()
    factory = sqlite_writers.connection_factory(path)
    first = sqlite3.connect(path, timeout=0.2, factory=factory)
    second = sqlite3.connect(path, timeout=0.2, factory=factory)
    try:
        first.execute("INSERT INTO t VALUES ('first', 1)")
        began = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            second.execute("INSERT INTO t VALUES ('second', 2)")
        assert time.monotonic() - began < 5
        first.commit()
        second.rollback()
        second.execute("INSERT INTO t VALUES ('second', 2)")
        second.commit()
        assert [row[0] for row in first.execute("SELECT writer FROM t ORDER BY n")] == ["first", "second"]
    finally:
        first.close()
        second.close()
