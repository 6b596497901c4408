"""A broker that cannot take the work must not hang the API: 503 with Retry-After, fast.

The web app runs in its own gunicorn process whose broker is (a) a port nobody listens on and
(b) a black hole that accepts connections and never answers, the case the socket timeouts
in celeryconfig exist for."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import hashlib
from urllib.parse import urlsplit

import pytest
import requests

from common.config import get_settings

from common import tokens
from tests.conftest import ROOT, SEED_ALBUM, SEED_USER, TEST_JWT_SECRET
from tests.e2e.conftest import free_port, wait_for


@pytest.fixture
def black_hole():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # accept, never answer
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    for conn in held:
        conn.close()
    server.close()


def serve(broker_url: str, database_up: bool = True, **extra_env: str):
    """One gunicorn process; waits until /health says up (or, ``database_up=False``, answers at all)."""
    port = free_port()
    env = {**os.environ, "CELERY_BROKER_URL": broker_url, "REDIS_URL": broker_url, "PYTHONPATH": str(ROOT), **extra_env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "web:create_app()"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(url + "/health", timeout=10).ok or not database_up
        except requests.RequestException:
            return False

    try:
        wait_for(up, 30, what="gunicorn")
    except BaseException:
        proc.terminate()  # a server that never came up is not left running
        proc.wait(timeout=10)
        raise
    return proc, url


def _upload_done(base: str) -> requests.Response:
    token = tokens.issue_session(SEED_USER, {SEED_ALBUM: ["image_upload"]}, TEST_JWT_SECRET, 3600)
    return requests.post(f"{base}/api/v1/albums/{SEED_ALBUM}/upload_done",
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _webhook(base: str) -> requests.Response:
    from tests.web.test_webhook import notification_token, upload_body

    body = upload_body()
    ts = str(int(time.time()))
    secret = urlsplit(get_settings().cloudinary_url).password or ""
    headers = {"X-Cld-Timestamp": ts, "Content-Type": "application/json",
               "X-Cld-Signature": hashlib.sha1(body + ts.encode() + secret.encode()).hexdigest()}
    return requests.post(f"{base}/api/v1/cloudinary?token={notification_token()}", data=body, headers=headers, timeout=10)


def _timed(broker_url: str, call):
    proc, base = serve(broker_url)
    try:
        started = time.monotonic()
        response = call(base)
        return response, time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _broker(kind: str, black_hole: str) -> str:
    return f"redis://127.0.0.1:{free_port()}/0" if kind == "refused" else black_hole


@pytest.mark.parametrize("broker", ["refused", "black hole"])
def test_the_webhook_answers_503_within_two_seconds(seed_album, black_hole, broker):
    """The webhook writes nothing: without the broker it cannot keep the notification, so it
    says so and Cloudinary delivers it again later."""
    response, elapsed = _timed(_broker(broker, black_hole), _webhook)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json()["error"]["code"] == "broker_unavailable"
    assert elapsed < 2.0, elapsed


@pytest.mark.parametrize("broker", ["refused", "black hole"])
def test_upload_done_answers_within_two_seconds_and_keeps_its_reconcile(seed_album, black_hole, broker):
    """upload_done records the reconcile it asks for with the album, so a broker outage costs
    the client nothing: the form comes back, and heal carries the reconcile out later."""
    from common import db
    from common.models import Album

    response, elapsed = _timed(_broker(broker, black_hole), _upload_done)
    assert response.status_code == 200, response.text
    assert response.json()["upload_form"]["params"]["tags"] == SEED_ALBUM
    assert elapsed < 2.0, elapsed
    with db.session_scope() as session:
        album = session.get(Album, SEED_ALBUM)
        assert album.reconcile_requested_at is not None and album.form_issued_at is not None
