"""Bounded request bodies (web/body.py): the depth scan agrees with the parser, and every
endpoint that reads a body answers a too-deep or too-large one with a JSON 4xx, writing nothing."""
from __future__ import annotations

import io
import json
import random

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from common import tokens
from tests.conftest import SEED_ALBUM, SEED_USER, TEST_JWT_SECRET, row_counts
from tests.web.test_webhook import CLOUD_SECRET, notification_token, post, signed, upload_body
from web import create_app
from web.body import MAX_JSON_DEPTH, nesting_within

NESTED = b"[" * 10000 + b"]" * 10000


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def random_json(rng: random.Random, levels: int) -> object:
    """A document ``levels`` deep along one branch, with siblings, and strings full of the
    characters the scan must not count: brackets, quotes, backslashes, non-ASCII."""
    def string() -> str:
        return "".join(rng.choice('[]{}"\\ab\u00e9\u2603\n') for _ in range(rng.randint(0, 8)))

    def leaf() -> object:
        return rng.choice([string(), rng.randint(-5, 5), None, True, 1.5, [], {}])

    node: object = leaf()
    for _ in range(levels):
        siblings = [leaf() for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.5:
            items = siblings + [node]
            rng.shuffle(items)
            node = items
        else:
            node = {string() + str(i): value for i, value in enumerate(siblings + [node])}
    return node


def test_the_scan_agrees_with_the_parser_on_random_documents():
    rng = random.Random(1234)
    for _ in range(600):
        doc = random_json(rng, rng.randint(0, 2 * MAX_JSON_DEPTH))
        raw = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode()
        assert nesting_within(raw, MAX_JSON_DEPTH) == (depth(doc) <= MAX_JSON_DEPTH), raw[:200]


LIMIT = MAX_JSON_DEPTH


@pytest.mark.parametrize("raw, within", [
    (b"[" * LIMIT + b"]" * LIMIT, True),
    (b"[" * (LIMIT + 1) + b"]" * (LIMIT + 1), False),
    (b"{\"a\":" * LIMIT + b"1" + b"}" * LIMIT, True),
    (b"{\"a\":" * (LIMIT + 1) + b"1" + b"}" * (LIMIT + 1), False),
    (b"[" + b"[1, {}], " * 500 + b"[]]", True),  # many brackets, shallow
    (NESTED, False),
    (b"[" * 100000, False),  # unbalanced and deep: never reaches the parser
    (b'["' + b"[" * 5000 + b'"]', True),  # brackets in a string are text
    (b'["\\"' + b"[" * 5000 + b'"]', True),  # an escaped quote does not end the string
    (b'["\\\\"' + b", " + b"[" * 5000 + b'"]', False),  # ...an escaped backslash does
    (b"[" * (LIMIT + 8) + b"]" * (LIMIT + 7), False),
])
def test_depth_cases(raw, within):
    assert nesting_within(raw, MAX_JSON_DEPTH) is within


@pytest.mark.timeout(20)
def test_the_scan_stays_linear_on_hostile_strings():
    """Backslash-quote runs with no closing quote are where a string regex goes quadratic."""
    for raw in (b'"\\"' * 300_000, b'"\\' + b'\\"' * 300_000 + b"\\", b'"' * 600_000, b"[" * 33 + b'"\\"' * 300_000):
        nesting_within(raw, MAX_JSON_DEPTH)


# -- the endpoints --------------------------------------------------------------------------------


@pytest.fixture
def client(settings):
    return create_app(settings.with_overrides(cloudinary_url=f"cloudinary://key:{CLOUD_SECRET}@cloud")).test_client()


def _assert_json_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.data[:300]
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.get_json()["error"]["code"] == code
    assert "X-token" not in response.headers


def _manage() -> dict[str, str]:
    token = tokens.issue_session(SEED_USER, {SEED_ALBUM: ("manage",)}, TEST_JWT_SECRET, 3600)
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


@pytest.mark.parametrize("body", [NESTED, b'{"mode": ' + NESTED + b"}", b"[" * 100000, b'{"mode": "all"}\xff'])
def test_reprocess_refuses_deep_or_broken_json_with_400(client, seed_album, body):
    before = row_counts()
    _assert_json_error(client.post(f"/api/v1/albums/{SEED_ALBUM}/reprocess", data=body, headers=_manage()), 400, "invalid_json")
    assert row_counts() == before


def post_chunked(client, path: str, body: bytes, headers: dict[str, str]):
    """A body without Content-Length, as a WSGI server passes a chunked one (gunicorn: tests/web/test_gunicorn.py)."""
    environ = EnvironBuilder(path=path, method="POST", headers=headers, input_stream=io.BytesIO(body)).get_environ()
    del environ["CONTENT_LENGTH"]
    environ.update({"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"})
    # Straight to the app: the test client would derive a Content-Length again.
    app_iter, status, response_headers = run_wsgi_app(client.application, environ, buffered=True)
    return client.application.response_class(b"".join(app_iter), status=status, headers=response_headers)


def test_reprocess_reads_a_chunked_body_and_refuses_one_over_the_limit(client, seed_album):
    """No Content-Length (chunked): the body is read within the bound, not ignored nor cut."""
    path = f"/api/v1/albums/{SEED_ALBUM}/reprocess"
    small = post_chunked(client, path, b'{"mode": "all"}', _manage())
    assert small.status_code == 202 and small.get_json()["mode"] == "all"
    big = post_chunked(client, path, b'{"mode": "all", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}', _manage())
    _assert_json_error(big, 413, "payload_too_large")


def test_upload_done_refuses_a_chunked_body_of_another_media_type(client, seed_album):
    """Without Content-Length the media-type check must still see that there is a body."""
    token = tokens.issue_session(SEED_USER, {SEED_ALBUM: ("image_upload",)}, TEST_JWT_SECRET, 3600)
    path = f"/api/v1/albums/{SEED_ALBUM}/upload_done"
    before = row_counts()
    refused = post_chunked(client, path, b"hello", {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"})
    _assert_json_error(refused, 415, "unsupported_media_type")
    assert row_counts() == before
    accepted = post_chunked(client, path, b"", {"Authorization": f"Bearer {token}", "Content-Type": "application/x-www-form-urlencoded"})
    assert accepted.status_code == 200


def test_a_signed_webhook_nested_too_deep_is_400_not_500(client, seed_album):
    for body in (NESTED, b'{"notification_type": "upload", "x": ' + NESTED + b"}"):
        _assert_json_error(post(client, body, signed(body)), 400, "invalid_json")


def test_a_webhook_nested_to_the_limit_is_accepted(client, seed_album):
    payload = json.loads(upload_body())
    payload["context"] = json.loads("[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1))
    body = json.dumps(payload).encode()
    assert post(client, body, signed(body)).status_code == 200


def test_a_chunked_webhook_over_the_limit_is_413_before_any_signature_check(client, seed_album):
    body = upload_body()[:-1] + b', "pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = post_chunked(client, f"/api/v1/cloudinary?token={notification_token()}", body, signed(body))
    _assert_json_error(response, 413, "payload_too_large")
