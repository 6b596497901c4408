"""The database engine against a PostgreSQL that does not answer (a cut link, a server hung at
startup): a connection attempt fails within seconds with the error tasks retry on, rather than
holding a worker for as long as the kernel waits."""
from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from common.db import PG_CONNECT_DEFAULTS, make_engine
from tests.web.test_broker_unavailable import black_hole  # noqa: F401  (a fixture)


@pytest.fixture
def silent_server(black_hole: str) -> int:  # noqa: F811
    """Completes TCP handshakes and never says a word."""
    return urlsplit(black_hole).port or 0


def _connect_fails_after(url: str, give_up: float = 20.0) -> float:
    outcome: list[BaseException | None] = []
    started = time.monotonic()

    def connect() -> None:
        try:
            with make_engine(url).connect() as conn:
                conn.execute(text("SELECT 1"))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(give_up)
    assert outcome, f"the connection attempt still waited after {give_up} s"
    assert isinstance(outcome[0], OperationalError), outcome[0]
    return time.monotonic() - started


def test_a_silent_database_fails_a_connection_within_the_connect_timeout(silent_server):
    elapsed = _connect_fails_after(f"postgresql+psycopg://postgres@127.0.0.1:{silent_server}/album")
    # Bounded by the timeout (libpq's default would wait as long as the server stays silent).
    assert elapsed < 2 * PG_CONNECT_DEFAULTS["connect_timeout"] + 2, elapsed


def test_a_timeout_named_in_the_url_wins(silent_server):
    elapsed = _connect_fails_after(f"postgresql+psycopg://postgres@127.0.0.1:{silent_server}/album?connect_timeout=1")
    assert elapsed < PG_CONNECT_DEFAULTS["connect_timeout"] - 1, elapsed
