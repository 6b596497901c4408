"""A database that cannot be reached (refused, or a cut link: connections that never answer)
is a 503 JSON answer with Retry-After within seconds, under gunicorn: never a 500, an HTML page,
or a request held until gunicorn kills its worker."""
from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
import requests

from common import tokens
from tests.conftest import SEED_ALBUM, TEST_JWT_SECRET
from tests.e2e.conftest import free_port
from tests.web.test_broker_unavailable import black_hole, serve  # noqa: F401  (black_hole: a fixture)


@pytest.mark.parametrize("database", ["refused", "black hole"])
def test_an_unreachable_database_is_a_503_within_seconds(black_hole, redis_url, database):  # noqa: F811
    port = free_port() if database == "refused" else urlsplit(black_hole).port
    proc, base = serve(redis_url, database_up=False, DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{port}/album")
    try:
        token = tokens.issue_session("user-1", {SEED_ALBUM: ["read", "image_upload"]}, TEST_JWT_SECRET, 3600)
        for method, path in (("GET", f"/api/v1/albums/{SEED_ALBUM}"), ("POST", f"/api/v1/albums/{SEED_ALBUM}/upload_done"),
                             ("GET", "/health")):
            started = time.monotonic()
            answer = requests.request(method, base + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            took = time.monotonic() - started
            assert answer.status_code == 503, (path, answer.status_code, answer.text)
            assert answer.headers["Content-Type"].startswith("application/json")
            assert answer.json()["error"]["code"] == "database_unavailable"
            assert answer.headers["Retry-After"] == "5"
            assert took < 10, (path, took)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
