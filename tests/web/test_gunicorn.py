"""The app as production serves it: gunicorn with gunicorn.conf.py, spoken to over raw sockets.

What gunicorn refuses itself (request line, header size and count, malformed requests) and what
the app refuses early (bodies over 1 MiB, chunked or not; JSON nested too deep) is answered as
JSON with the security headers, writes nothing and queues nothing; and its logs (access log on)
hold no credential that any request carried."""
from __future__ import annotations

import hashlib
import json
import time
from typing import Iterator

import pytest
import redis
import requests

from common import tokens
from tests.conftest import SEED_ALBUM, SEED_ORG, SEED_USER, TEST_JWT_SECRET, row_counts
from tests.e2e.stack import wait_for
from tests.web.conftest import CLOUD_SECRET
from web.headers import JSON_CONTENT_TYPE, SECURITY_HEADERS


def session() -> str:
    return tokens.issue_session(SEED_USER, {SEED_ALBUM: tokens.ABILITIES}, TEST_JWT_SECRET, 3600)


def notification() -> str:
    return tokens.notification_token(SEED_USER, SEED_ALBUM, SEED_ORG, TEST_JWT_SECRET, 3600)


def signed_headers(body: bytes) -> str:
    ts = str(int(time.time()))
    signature = hashlib.sha1(body + ts.encode() + CLOUD_SECRET.encode()).hexdigest()
    return f"Content-Type: application/json\r\nX-Cld-Timestamp: {ts}\r\nX-Cld-Signature: {signature}\r\n"


def chunked(body: bytes, size: int = 65536) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        part = body[start:start + size]
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
    yield b"0\r\n\r\n"


def queued(redis_url: str) -> int:
    r = redis.Redis.from_url(redis_url)
    return sum(r.llen(queue) for queue in ("fast", "io"))


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int, code: str) -> None:
    assert status == expected, body[:300]
    assert headers["Content-Type"] == JSON_CONTENT_TYPE
    assert json.loads(body)["error"]["code"] == code
    assert json.loads(body)["error"]["message"]
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert headers.get("X-Request-Id")
    assert "X-token" not in headers


LONG_LINE = f"GET /api/v1/albums/{SEED_ALBUM}?pad={'x' * 4100} HTTP/1.1\r\nHost: t\r\n\r\n"
BIG_HEADER = f"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {'y' * 100_000}\r\n\r\n"
MANY_HEADERS = "GET /health HTTP/1.1\r\nHost: t\r\n" + "".join(f"X-H{i}: 1\r\n" for i in range(101)) + "\r\n"


@pytest.mark.parametrize("request_bytes, status, code", [
    (LONG_LINE, 414, "uri_too_long"),
    (BIG_HEADER, 431, "request_header_fields_too_large"),
    (MANY_HEADERS, 431, "request_header_fields_too_large"),
    ("GARBAGE\r\n\r\n", 400, "bad_request"),
    ("GET /health HTTP/1.1\r\nHost: t\r\nBad Header: 1\r\n\r\n", 400, "bad_request"),
    ("GET /health HTTP/9.9\r\nHost: t\r\n\r\n", 400, "bad_request"),
], ids=["request line 4,100+", "header 100 KB", "101 headers", "garbage", "bad header name", "bad version"])
def test_what_gunicorn_refuses_is_json_with_the_security_headers(gunicorn_server, seed_album, redis_url, request_bytes, status, code):
    before, before_queued = row_counts(), queued(redis_url)
    assert_json_error(*gunicorn_server.raw(request_bytes.encode()), status, code)
    assert row_counts() == before and queued(redis_url) == before_queued


def test_bodies_over_1_mib_are_413_json_chunked_or_not(gunicorn_server, seed_album, redis_url):
    before, before_queued = row_counts(), queued(redis_url)
    body = json.dumps({"notification_type": "upload", "tags": [SEED_ALBUM], "pad": "x" * (1024 * 1024)}).encode()
    path = f"/api/v1/cloudinary?token={notification()}"
    # Chunked and correctly signed: refused for its size, not "cut off and badly signed".
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n{signed_headers(body)}\r\n".encode()
    assert_json_error(*gunicorn_server.raw(head, chunked(body)), 413, "payload_too_large")
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{signed_headers(body)}\r\n".encode()
    assert_json_error(*gunicorn_server.raw(head, [body]), 413, "payload_too_large")
    reprocess = f"POST /api/v1/albums/{SEED_ALBUM}/reprocess HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {session()}\r\n" \
                f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert_json_error(*gunicorn_server.raw(reprocess.encode(), chunked(b'{"mode": "' + b"m" * (2 * 1024 * 1024) + b'"}')), 413,
                      "payload_too_large")
    assert row_counts() == before and queued(redis_url) == before_queued


def test_json_nested_too_deep_is_400_json(gunicorn_server, seed_album, redis_url):
    before, before_queued = row_counts(), queued(redis_url)
    nested = b"[" * 10000 + b"]" * 10000
    webhook = f"POST /api/v1/cloudinary?token={notification()} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(nested)}\r\n" \
              f"{signed_headers(nested)}\r\n"
    assert_json_error(*gunicorn_server.raw(webhook.encode(), [nested]), 400, "invalid_json")
    reprocess = f"POST /api/v1/albums/{SEED_ALBUM}/reprocess HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {session()}\r\n" \
                f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert_json_error(*gunicorn_server.raw(reprocess.encode(), chunked(nested)), 400, "invalid_json")
    assert row_counts() == before and queued(redis_url) == before_queued


def test_the_logs_hold_no_credential(gunicorn_server, seed_album):
    """Every kind of credential a request can carry, accepted and refused, then the whole log."""
    used: list[str] = []

    def new(token: str) -> str:
        used.append(token)
        return token

    api = f"{gunicorn_server.url}/api/v1/albums/{SEED_ALBUM}"
    for header in (f"Bearer {new(session())}", f'Token token="{new(session())}"'):
        response = requests.get(api, headers={"Authorization": header, "Referer": f"{gunicorn_server.url}/upload_test?token={new(session())}"}, timeout=10)
        assert response.status_code == 200
        used.append(response.headers["X-token"])
        used.append(response.json()["upload_form"]["params"]["notification_url"].split("token=", 1)[1])
    assert requests.get(f"{gunicorn_server.url}/upload_test?album={SEED_ALBUM}&token={new(session())}", timeout=10).status_code == 200
    body = json.dumps({"notification_type": "moderation", "public_id": "p"}).encode()
    headers = dict(line.split(": ", 1) for line in signed_headers(body).strip().split("\r\n"))
    assert requests.post(f"{gunicorn_server.url}/api/v1/cloudinary?token={new(notification())}", data=body, headers=headers, timeout=10).status_code == 200
    assert requests.post(f"{gunicorn_server.url}/api/v1/cloudinary?token={new(notification())}", data=b"{}", timeout=10).status_code == 401
    assert requests.get(api, headers={"Authorization": f"Bearer {new(notification())}"}, timeout=10).status_code == 401
    # Refused by gunicorn itself, and logged by it: an over-long and a malformed request line.
    gunicorn_server.raw(f"GET /upload_test?token={new(session())}&pad={'x' * 4100} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    gunicorn_server.raw(f"GARBAGE /upload_test?token={new(session())}\r\n\r\n".encode())

    def logged() -> str | None:
        text = gunicorn_server.log.read_text(errors="replace")
        return text if text.count("Invalid request from") >= 2 and text.count("/api/v1/cloudinary") >= 2 else None

    text = wait_for(logged, 10, what="the log lines of those requests")
    assert f'"GET /api/v1/albums/{SEED_ALBUM} HTTP/1.1" 200' in text  # the access log is on
    assert "token=[redacted]" in text
    leaked = [token[:16] + "…" for token in used if token in text or token.split(".")[-1] in text]
    assert leaked == [], f"credentials in the gunicorn log: {leaked}"
