"""The webhook's checks, in-process: every refusal has its status and code, writes nothing and
publishes nothing (counted with Celery's own before_task_publish signal)."""
from __future__ import annotations

import hashlib
import json
import time

import pytest
from celery.signals import before_task_publish

from common import tokens
from tests.conftest import SEED_ALBUM, SEED_ORG, SEED_USER, TEST_JWT_SECRET, row_counts
from web import create_app

CLOUD_SECRET = "webhook-test-secret"


@pytest.fixture
def client(settings):
    app = create_app(settings.with_overrides(cloudinary_url=f"cloudinary://key:{CLOUD_SECRET}@cloud"))
    return app.test_client()


@pytest.fixture
def published():
    sent: list[str] = []

    def record(sender=None, **_):
        sent.append(sender)

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


def notification_token(album: str = SEED_ALBUM, iat: int | None = None) -> str:
    return tokens.notification_token(SEED_USER, album, SEED_ORG, TEST_JWT_SECRET, 14400, now=iat)


def signed(body: bytes, timestamp: int | None = None, secret: str = CLOUD_SECRET) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Cld-Timestamp": ts, "X-Cld-Signature": hashlib.sha1(body + ts.encode() + secret.encode()).hexdigest(),
            "Content-Type": "application/json"}


def upload_body(tags=(SEED_ALBUM,)) -> bytes:
    return json.dumps({"notification_type": "upload", "public_id": "p1", "asset_id": "a" * 32, "tags": list(tags),
                       "width": 10, "height": 10, "format": "jpg"}).encode()


def post(client, body: bytes, headers: dict[str, str], token: str | None = None):
    return client.post(f"/api/v1/cloudinary?token={token or notification_token()}", data=body, headers=headers)


def test_a_genuine_notification_is_accepted_and_enqueued(client, seed_album, published):
    body = upload_body()
    response = post(client, body, signed(body))
    assert response.status_code == 200
    assert response.get_json() == {"status": "accepted"}
    assert published == ["album.ingest"]


@pytest.mark.parametrize("case", ["forged", "wrong secret", "stale", "future", "no headers", "bad token", "expired form"])
def test_refusals_are_401_and_leave_nothing_behind(client, seed_album, published, case):
    body = upload_body()
    headers = signed(body)
    token = None
    if case == "forged":
        headers["X-Cld-Signature"] = "0" * 40
    elif case == "wrong secret":
        headers = signed(body, secret="not-the-secret")
    elif case == "stale":
        headers = signed(body, timestamp=int(time.time()) - 3 * 3600)
    elif case == "future":
        headers = signed(body, timestamp=int(time.time()) + 3600)
    elif case == "no headers":
        headers = {"Content-Type": "application/json"}
    elif case == "bad token":
        token = "nope"
    elif case == "expired form":
        token = notification_token(iat=int(time.time()) - 604800 - 3600)
    before = row_counts()
    response = post(client, body, headers, token)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert published == [] and row_counts() == before


def test_a_token_for_another_album_is_403(client, seed_album, published):
    body = upload_body(tags=("SOMEONEELSE",))
    response = post(client, body, signed(body))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "album_mismatch"
    assert published == []


def test_a_notification_token_stays_good_for_the_forms_lifetime(client, seed_album, published):
    body = upload_body()
    day_old = notification_token(iat=int(time.time()) - 86400)  # exp passed, form still valid
    assert post(client, body, signed(body), day_old).status_code == 200


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe", b""])
def test_non_json_object_bodies_are_400(client, seed_album, published, body):
    # Correctly signed (over the raw bytes), so only the body itself is wrong.
    response = post(client, body, signed(body))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    assert published == []


def test_other_notification_types_are_acknowledged_without_work(client, seed_album, published):
    body = json.dumps({"notification_type": "moderation", "public_id": "p1"}).encode()
    response = post(client, body, signed(body))
    assert response.status_code == 200 and published == []


def test_delete_and_eager_notifications_reach_their_tasks(client, seed_album, published):
    for kind, task in (("delete", "album.remove_deleted"), ("eager", "album.record_eager")):
        body = json.dumps({"notification_type": kind, "public_id": "p1", "resources": [{"public_id": "p1"}]}).encode()
        assert post(client, body, signed(body)).status_code == 200
        assert published[-1] == task


def test_the_acknowledgement_touches_no_database(client, seed_album, published):
    """The hot path verifies and enqueues; the worker does the writing (and the reading)."""
    from sqlalchemy import event

    from common import db

    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    engine = db.get_engine()
    event.listen(engine, "before_cursor_execute", count)
    try:
        body = upload_body()
        assert post(client, body, signed(body)).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements == [] and published == ["album.ingest"]


def test_a_session_token_is_not_a_notification_token(client, seed_album, published):
    """A user's session (same secret) cannot stand in for the form's notification token."""
    session = tokens.issue_session(SEED_USER, {SEED_ALBUM: tokens.ABILITIES}, TEST_JWT_SECRET, 3600)
    with_album = tokens.encode({**tokens.decode_session(session, TEST_JWT_SECRET), "album_id": SEED_ALBUM}, TEST_JWT_SECRET)
    body = upload_body()
    before = row_counts()
    for token in (session, with_album):
        response = post(client, body, signed(body), token)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"
    assert published == [] and row_counts() == before


def test_the_answer_is_the_same_bytes_and_a_request_id_with_a_newline_is_not_echoed(client, seed_album, published):
    """The answer is built once (web/webhook.py); the headers go into Werkzeug's list without its
    per-value check (web/headers.py), so a caller's X-Request-Id must be whole-matched: "$"
    alone lets a trailing newline through, which would split the header."""
    body = upload_body()
    response = client.post(f"/api/v1/cloudinary?token={notification_token()}", data=body, headers=signed(body),
                           environ_overrides={"HTTP_X_REQUEST_ID": "req-12345678\n"})
    assert response.status_code == 200
    assert response.data == b'{"status":"accepted"}'
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["X-Request-Id"] != "req-12345678\n"
    assert all("\n" not in value for _, value in response.headers.items())
