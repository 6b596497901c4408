"""Test fixtures shared by the whole suite.

Real parts: a real database (SQLite by default; ``TEST_DATABASE_URL`` points the suite at
PostgreSQL), a real Redis (``TEST_REDIS_URL``, else a private ``redis-server`` started here).
The environment is set before any project module reads its settings, so subprocesses (the
web server, Celery workers) started by the end-to-end fixtures inherit the same settings.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import services  # noqa: E402  (scripts/services.py)

_TMP = Path(tempfile.mkdtemp(prefix="album-tests-"))
_redis_proc = None

_redis_url = os.environ.get("TEST_REDIS_URL")
if not _redis_url:
    _redis_url, _redis_proc = services.start_private_redis(_TMP / "redis")

TEST_JWT_SECRET = "test-jwt-secret-that-is-long-enough-0123456789"
os.environ.update(
    {
        "APP_ENV": "test",
        "DATABASE_URL": os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{_TMP / 'album.db'}",
        "CELERY_BROKER_URL": _redis_url,
        "REDIS_URL": _redis_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "PUBLIC_URL": "http://127.0.0.1:5001",
        "RECOUNT_DEBOUNCE": "0.3",
        "RECONCILE_COALESCE": "1",
        # Every response the suite receives is checked against web/openapi.yaml (tests/openapi_contract.py).
        "OPENAPI_VALIDATE_RESPONSES": "1",
    }
)

from common import db  # noqa: E402
from common.config import get_settings  # noqa: E402
from common.coordination import BrokerEpoch  # noqa: E402
from common.migrate import upgrade  # noqa: E402
from common.models import Album, Base, Image, Organization  # noqa: E402

pytest_plugins = ["tests.openapi_contract"]

# The multi-host trials (tests/cluster) need root and network namespaces and take minutes:
# .ci/run runs them once with CLUSTER_TESTS=1; `make test` does not collect them.
collect_ignore = [] if os.environ.get("CLUSTER_TESTS") == "1" else ["cluster"]

FIXTURES = ROOT / "tests" / "fixtures" / "photos"
SEED_ORG = "232678ca-60c7-4bae-a9b2-88e55d4aecdc"
SEED_ALBUM = "00100000123BB25"
SEED_USER = "bca5ea10-6e06-46bb-a160-d5fb669a2774"


def _fresh_schema(url: str) -> None:
    from sqlalchemy import text

    engine = db.make_engine(url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    upgrade(url)  # the migrations are what create the schema, in tests as in production


@pytest.fixture(scope="session", autouse=True)
def _database() -> Iterator[str]:
    get_settings.cache_clear()
    url = get_settings().database_url
    _fresh_schema(url)
    db.configure(url)
    yield url
    db.dispose(close=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    yield _redis_url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _redis_proc is not None:
        _redis_proc.terminate()


@pytest.fixture(autouse=True)
def _clean_tables(_database: str) -> Iterator[None]:
    """Each test starts with empty tables and no debounce/budget state in Redis. (Not a
    FLUSHDB: that would also drop the broker's queue bindings under a running worker.)"""
    import redis

    with db.session_scope() as session:
        for model in (Image, Album, Organization):
            session.query(model).delete()
    r = redis.Redis.from_url(_redis_url)
    for pattern in ("album:*", "cloudinary:*"):
        # The broker's identity stays: without it a running heal would take every test for a
        # Redis restart (tests that stage one delete it themselves).
        keys = [k for k in r.scan_iter(pattern) if k != BrokerEpoch.KEY.encode()]
        if keys:
            r.delete(*keys)
    yield


@pytest.fixture
def settings():
    return get_settings()


@pytest.fixture
def seed_album() -> Album:
    with db.session_scope() as session:
        session.add(Organization(id=SEED_ORG, name="Seed"))
        session.flush()
        album = Album(id=SEED_ALBUM, organization_id=SEED_ORG)
        session.add(album)
    return album


def row_counts() -> dict[str, int]:
    """How many rows each table holds: tests assert a rejected request wrote nothing."""
    from sqlalchemy import func, select

    with db.session_scope() as session:
        return {m.__tablename__: session.scalar(select(func.count()).select_from(m)) for m in (Organization, Album, Image)}
