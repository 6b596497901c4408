"""The webhook's fast path (web/webhook.py ``NotificationFastPath``): a valid notification is
answered before Flask, everything else by the Flask view. The user relies on the two being one
webhook: the same status, bytes and headers, the same task published, the same refusals."""
from __future__ import annotations

import json

import pytest
from celery.signals import before_task_publish
from flask import Flask

from tests.conftest import SEED_ALBUM
from tests.web.test_webhook import CLOUD_SECRET, notification_token, signed, upload_body
from web import create_app
from web.webhook import NotificationFastPath

#: Values that differ on every request; their presence and place are compared, not their values.
PER_REQUEST = {"X-Request-Id", "X-Runtime"}


@pytest.fixture
def app(settings) -> Flask:
    app = create_app(settings.with_overrides(cloudinary_url=f"cloudinary://key:{CLOUD_SECRET}@cloud"))
    app.config["FLASK_VIEWS"] = []

    @app.before_request
    def _count() -> None:  # the requests that reached Flask
        app.config["FLASK_VIEWS"].append(1)

    return app


@pytest.fixture
def published():
    sent: list[tuple[str, object]] = []

    def record(sender=None, body=None, **_):
        sent.append((sender, body[0] if body else None))

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


def flask_only(app: Flask) -> Flask:
    """The same app without the fast path in front."""
    assert isinstance(app.wsgi_app, NotificationFastPath)
    app.wsgi_app = app.wsgi_app.inner  # type: ignore[method-assign]
    return app


def answer(app: Flask, body: bytes, headers: dict[str, str], request_id: str | None = None):
    extra = {"X-Request-Id": request_id} if request_id else {}
    return app.test_client().post(f"/api/v1/cloudinary?token={notification_token()}", data=body, headers={**headers, **extra})


@pytest.mark.parametrize("kind", ["upload", "delete", "eager", "moderation"])
def test_a_valid_notification_is_answered_before_flask_exactly_as_flask_answers_it(app, seed_album, published, kind):
    payload = json.loads(upload_body())
    payload["notification_type"] = kind
    body = json.dumps(payload).encode()
    headers = signed(body)

    fast = answer(app, body, headers, request_id="caller-request-0001")
    assert app.config["FLASK_VIEWS"] == []  # answered before Flask
    fast_published = list(published)
    published.clear()
    slow = answer(flask_only(app), body, headers, request_id="caller-request-0001")
    assert app.config["FLASK_VIEWS"] == [1]

    assert (fast.status, fast.data) == (slow.status, slow.data) == ("200 OK", b'{"status":"accepted"}')
    assert [name for name, _ in fast.headers] == [name for name, _ in slow.headers]
    assert ([(n, v) for n, v in fast.headers if n not in PER_REQUEST]
            == [(n, v) for n, v in slow.headers if n not in PER_REQUEST])
    assert fast.headers["X-Request-Id"] == slow.headers["X-Request-Id"] == "caller-request-0001"
    assert float(fast.headers["X-Runtime"]) >= 0
    # The same task, for the same album, with the same payload (none for a type only acknowledged).
    assert fast_published == published
    assert len(fast_published) == (0 if kind == "moderation" else 1)


def test_a_refusal_is_flasks_answer_from_the_same_bytes(app, seed_album, published):
    """The fast path reads the body; a refusal hands the same bytes to Flask. A 403 needs a valid
    signature over them: it shows the body arrived whole."""
    body = upload_body(tags=("some-other-album",))
    response = answer(app, body, signed(body))
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "album_mismatch"
    assert app.config["FLASK_VIEWS"] == [1] and published == []

    response = answer(app, body, {**signed(body), "X-Cld-Signature": "0" * 40})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Cloudinary")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert published == []


def test_a_body_shorter_than_its_length_gets_flasks_answer(app, seed_album, published):
    """A client gone mid-body: the fast path does not answer it; Flask does, from what arrived."""
    body = upload_body()

    def post(target: Flask):
        return target.test_client().post(f"/api/v1/cloudinary?token={notification_token()}", data=body,
                                         headers=signed(body), environ_overrides={"CONTENT_LENGTH": str(len(body) + 10)})

    fast = post(app)
    assert app.config["FLASK_VIEWS"] == [1]
    slow = post(flask_only(app))
    assert (fast.status, fast.data) == (slow.status, slow.data) and fast.status_code < 500


def test_a_caller_request_id_that_does_not_match_is_replaced(app, seed_album, published):
    body = upload_body()
    response = answer(app, body, signed(body), request_id="bad id with spaces")
    assert response.status_code == 200 and app.config["FLASK_VIEWS"] == []
    assert response.headers["X-Request-Id"] != "bad id with spaces" and len(response.headers["X-Request-Id"]) == 36


def test_a_broker_that_refuses_is_tried_once_and_answered_503_by_flask(app, seed_album, monkeypatch):
    """A black-holed broker costs the publish its timeout: the Flask view answers the fast path's
    failure instead of waiting for the broker a second time."""
    from common.enqueue import BrokerUnavailable
    from web import webhook

    attempts: list[str] = []

    def refuse(name, *_):
        attempts.append(name)
        raise BrokerUnavailable("connection refused")

    monkeypatch.setattr(webhook, "publish_fast", refuse)
    body = upload_body()
    response = answer(app, body, signed(body))
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "broker_unavailable"
    assert response.headers["Retry-After"] == "5"
    assert attempts == ["album.ingest"] and app.config["FLASK_VIEWS"] == [1]


def test_a_body_the_server_cannot_read_gets_flasks_answer(app, seed_album, published):
    """A server may raise while reading a body whose client went away: Flask answers it (JSON),
    the fast path does not let it become a server error."""

    class Broken:
        def read(self, *_: object) -> bytes:
            raise OSError("client gone")

    body = upload_body()
    response = app.test_client().post(f"/api/v1/cloudinary?token={notification_token()}", data=body, headers=signed(body),
                                      environ_overrides={"wsgi.input": Broken()})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_request"
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert app.config["FLASK_VIEWS"] == [1] and published == []
