"""SQLite's writers wait in a queue that wakes them, instead of polling for the write lock.

SQLite has one write lock per database. A writer that finds it taken is retried by SQLite's busy
handler, which sleeps 1, 2, 5, 10 ... then 100 ms at a time until ``busy_timeout``: it does not
wake when the lock is freed. With many writers (two prefork children, 32 io threads) the lock is
often free while every waiter sleeps, and an unlucky writer loses the race for seconds
(bench/pipeline_capacity.py: single statements waited up to 1.4 s; bench/README.md, issue 13).

Here a connection takes a per-process ``threading.Lock`` and then an exclusive ``flock`` on a
file beside the database before its transaction's first write, and gives both back when the
transaction ends (commit, rollback, close). Both are blocking waits the kernel ends as soon as
the holder lets go. SQLite's own locking and durability are untouched: the queue only orders
who asks for the write lock, and SQLite's busy handler still covers any writer outside it (the
``sqlite3`` shell, another program). Reads take nothing (WAL: readers never wait for writers).

A wait longer than ``WAIT_LIMIT`` goes on without the queue, to SQLite's busy handler and its
"database is locked" error: e.g. a thread whose second session writes while its first one holds
the queue would otherwise wait for itself forever.
"""
from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from functools import lru_cache
from typing import IO, Any

#: Seconds a writer waits for the queue before it asks SQLite directly (its busy_timeout is 30 s).
WAIT_LIMIT = 30.0
#: Statements that take no write lock by themselves: reads, and the transaction control that a
#: deferred transaction uses (its first write takes the turn). Anything else is taken to write
#: (a ``WITH`` may, so it counts; so do ``BEGIN IMMEDIATE`` and ``BEGIN EXCLUSIVE``).
_NO_WRITE = ("SELECT", "PRAGMA", "EXPLAIN", "COMMIT", "END", "ROLLBACK", "RELEASE", "SAVEPOINT")


class WriterQueue:
    """The writers of one database file in this process and, through ``flock``, all processes."""

    def __init__(self, database: str) -> None:
        self.path = f"{database}.writers"
        self._reset()
        # A fork keeps neither the parent's holder nor its open file: the child starts afresh.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self.thread_lock = threading.Lock()
        self._file: IO[bytes] | None = None

    def _lock_file(self) -> IO[bytes]:
        if self._file is None:
            self._file = open(self.path, "ab")
        return self._file

    def take(self) -> bool:
        """Wait for this process's turn, then for the database's; False if the wait ran out."""
        if not self.thread_lock.acquire(timeout=WAIT_LIMIT):
            return False
        try:
            fcntl.flock(self._lock_file().fileno(), fcntl.LOCK_EX)
        except OSError:  # no lock file beside the database (a read-only directory): SQLite's wait
            self.thread_lock.release()
            return False
        except BaseException:
            self.thread_lock.release()
            raise
        return True

    def give_back(self) -> None:
        try:
            fcntl.flock(self._lock_file().fileno(), fcntl.LOCK_UN)
        finally:
            self.thread_lock.release()


_queues: dict[str, WriterQueue] = {}
_queues_lock = threading.Lock()


def queue_for(database: str) -> WriterQueue:
    path = os.path.abspath(database)
    with _queues_lock:
        if path not in _queues:
            _queues[path] = WriterQueue(path)
        return _queues[path]


def _writes(sql: str) -> bool:
    words = sql.lstrip()[:32].upper().split()
    if not words or words[0] in _NO_WRITE:
        return False
    return words[0] != "BEGIN" or (len(words) > 1 and words[1] in ("IMMEDIATE", "EXCLUSIVE"))


class QueuedCursor(sqlite3.Cursor):
    """Takes its connection's turn in the writer queue before the transaction's first write."""

    connection: "QueuedConnection"

    def execute(self, sql: str, parameters: Any = (), /) -> "QueuedCursor":
        taken = self.connection.turn_for(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            self.connection.after_statement(taken)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> "QueuedCursor":
        taken = self.connection.turn_for(sql)
        try:
            return super().executemany(sql, seq_of_parameters)
        finally:
            self.connection.after_statement(taken)


class QueuedConnection(sqlite3.Connection):
    """``sqlite3.connect(..., factory=QueuedConnection)``: its cursors write in turn. The queue
    is the database file's (set by ``connection_factory``)."""

    writer_queue: WriterQueue | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._holding = False

    def cursor(self, factory: Any = QueuedCursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any:  # type: ignore[override]
        return self.cursor().executemany(sql, seq_of_parameters)

    def turn_for(self, sql: str) -> bool:
        """Wait for the turn if this statement writes and the turn is not held yet; True if taken now."""
        if self._holding or self.writer_queue is None or not _writes(sql):
            return False
        self._holding = self.writer_queue.take()
        return self._holding

    def after_statement(self, taken: bool) -> None:
        # A write outside a transaction (autocommit, DDL) is over once it ran, and so is the
        # transaction a COMMIT or ROLLBACK statement ended.
        if self._holding and not self.in_transaction:
            self._give_back()

    def _give_back(self) -> None:
        if self._holding and self.writer_queue is not None:
            self._holding = False
            self.writer_queue.give_back()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self._give_back()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._give_back()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._give_back()


@lru_cache(maxsize=None)
def connection_factory(database: str) -> type[QueuedConnection]:
    """The connection class for ``sqlite3.connect(database, factory=...)``."""
    return type("QueuedConnection", (QueuedConnection,), {"writer_queue": queue_for(database)})
