"""One engine per process and a ``session_scope()`` for each unit of work.

The web request and every task run get one session and one transaction. The engine is created
lazily and disposed after a fork (``worker/signals.py``) so no pooled connection crosses processes.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from common import changes  # noqa: F401  (registers the change numbering of every session's image writes)
from common import sqlite_writers
from common.config import get_settings

_engine: Engine | None = None
_session_factory: sessionmaker[Session] | None = None


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the web app read while a worker writes; busy_timeout waits instead of failing
    # with "database is locked" when two processes write at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


#: libpq's defaults wait for a cut link as long as the kernel does: a connect for about two
#: minutes, a query whose packets go unanswered for about fifteen. These bound both, so a task
#: or request fails within seconds and is retried (tasks) or answered (the API) rather than
#: holding its worker; and dead idle connections are found by keepalives. Parameters named in
#: ``DATABASE_URL`` win.
PG_CONNECT_DEFAULTS = {
    "connect_timeout": 5,
    "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
    "tcp_user_timeout": 10000,  # ms: sent data unacknowledged this long ends the connection
}


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        sqlite_args: dict[str, Any] = {"timeout": 30}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # Writers wait for each other in a queue that wakes them, not in SQLite's sleeps.
            sqlite_args["factory"] = sqlite_writers.connection_factory(str(Path(parsed.database).resolve()))
        engine = create_engine(url, connect_args=sqlite_args)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args = {k: v for k, v in PG_CONNECT_DEFAULTS.items() if k not in parsed.query}
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args=connect_args)


def configure(url: str | None = None) -> Engine:
    """(Re)create the process engine; ``url`` defaults to ``DATABASE_URL``."""
    global _engine, _session_factory
    if _engine is not None:
        _engine.dispose()
    _engine = make_engine(url or get_settings().database_url)
    _session_factory = sessionmaker(_engine, expire_on_commit=False)
    return _engine


def ensure(url: str) -> Engine:
    """The process engine for ``url``, created unless it already exists."""
    if _engine is not None and _engine.url.render_as_string(hide_password=False) == url:
        return _engine
    return configure(url)


def get_engine() -> Engine:
    return _engine if _engine is not None else configure()


def dispose(close: bool = False) -> None:
    """Drop pooled connections (``close=False`` after fork: don't touch the parent's sockets)."""
    if _engine is not None:
        _engine.dispose(close=close)


def new_session() -> Session:
    if _session_factory is None:
        configure()
    assert _session_factory is not None
    return _session_factory()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session in one transaction: commit on success, roll back on any error."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
