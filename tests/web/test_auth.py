"""The auth matrix: every way a token can be wrong, with status, error code, and no write."""
from __future__ import annotations

import time
import warnings

import jwt
import pytest

from common import tokens
from tests.conftest import SEED_ALBUM, SEED_USER, TEST_JWT_SECRET, row_counts
from web import create_app

UPLOAD_DONE = f"/api/v1/albums/{SEED_ALBUM}/upload_done"


@pytest.fixture
def client(settings):
    return create_app(settings).test_client()


def session_token(abilities=("image_upload",), album=SEED_ALBUM, **overrides) -> str:
    now = int(time.time())
    claims = {"exp": now + 3600, "iat": now, "user_id": SEED_USER,
              "abilities": {album: {"Access": {a: True for a in abilities}}}}
    claims.update(overrides)
    return tokens.encode({k: v for k, v in claims.items() if v is not None}, TEST_JWT_SECRET)


def _post(client, header: str | None):
    headers = {"Authorization": header} if header is not None else {}
    return client.post(UPLOAD_DONE, headers=headers, content_type="application/x-www-form-urlencoded")


def _assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.data
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    body = response.get_json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def _rsa_token() -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    return jwt.encode({"exp": now + 60, "iat": now, "abilities": {SEED_ALBUM: {"Access": {"image_upload": True}}}}, key, algorithm="RS256")


def _none_token() -> str:
    now = int(time.time())
    return jwt.encode({"exp": now + 60, "iat": now, "abilities": {SEED_ALBUM: {"Access": {"image_upload": True}}}}, None, algorithm="none")


def _hs512_token() -> str:
    """Signed with the right secret, but the wrong algorithm (PyJWT warns the key is short for it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode({"exp": int(time.time()) + 60, "iat": int(time.time())}, TEST_JWT_SECRET, algorithm="HS512")


UNAUTHORIZED = {
    "missing": None,
    "empty": "",
    "wrong scheme": "Basic dXNlcjpwYXNz",
    "malformed token header": 'Token token=abc',
    "not a jwt": 'Token token="not-a-jwt"',
    "bad signature": "Bearer " + tokens.encode({"exp": int(time.time()) + 60, "iat": int(time.time())}, "another-secret-another-secret-0123456789"),
    "alg none": "Bearer " + _none_token(),
    "alg HS512": "Bearer " + _hs512_token(),
}


@pytest.mark.parametrize("header", list(UNAUTHORIZED.values()), ids=list(UNAUTHORIZED))
def test_bad_tokens_are_401_with_a_challenge_and_write_nothing(client, seed_album, header):
    before = row_counts()
    response = _post(client, header)
    _assert_error(response, 401, "unauthorized")
    assert "WWW-Authenticate" in response.headers
    assert "X-token" not in response.headers
    assert row_counts() == before


def test_rs256_token_is_refused(client, seed_album):
    _assert_error(_post(client, "Bearer " + _rsa_token()), 401, "unauthorized")


def test_expired_token_is_401(client, seed_album):
    old = int(time.time()) - 10_000
    _assert_error(_post(client, "Bearer " + session_token(exp=old + 100, iat=old)), 401, "unauthorized")


@pytest.mark.parametrize("missing", ["exp", "iat"])
def test_token_without_exp_or_iat_is_401(client, seed_album, missing):
    _assert_error(_post(client, "Bearer " + session_token(**{missing: None})), 401, "unauthorized")


def test_token_without_the_right_is_403(client, seed_album):
    before = row_counts()
    _assert_error(_post(client, "Bearer " + session_token(abilities=("read",))), 403, "forbidden")
    _assert_error(_post(client, "Bearer " + session_token(album="SOMEOTHERALBUM")), 403, "forbidden")
    assert row_counts() == before


@pytest.mark.parametrize("album_id", ["A" * 65, "bad%20id", "..", "%2e%2e%2fetc", "a.b", "x;drop"])
def test_malformed_album_ids_are_404(client, seed_album, album_id):
    token = session_token(album=album_id)
    response = client.post(f"/api/v1/albums/{album_id}/upload_done", headers={"Authorization": f"Bearer {token}"})
    _assert_error(response, 404, response.get_json()["error"]["code"])
    assert response.get_json()["error"]["code"] in ("album_not_found", "not_found")


def test_unknown_album_is_404(client, seed_album):
    token = session_token(album="UNKNOWN123")
    response = client.post("/api/v1/albums/UNKNOWN123/upload_done", headers={"Authorization": f"Bearer {token}"})
    _assert_error(response, 404, "album_not_found")


def test_both_header_styles_work_and_reissue_the_session(client, seed_album):
    token = session_token()
    for header in (f'Token token="{token}"', f"Bearer {token}"):
        response = _post(client, header)
        assert response.status_code == 200
        reissued = jwt.decode(response.headers["X-token"], TEST_JWT_SECRET, algorithms=["HS256"])
        assert reissued["user_id"] == SEED_USER
        assert reissued["exp"] - reissued["iat"] == 14400
        assert list(reissued)[:2] == ["exp", "iat"]
        assert jwt.get_unverified_header(response.headers["X-token"]) == {"typ": "JWT", "alg": "HS256"}


def test_album_read_gives_a_form_only_to_uploaders(client, seed_album):
    reader = client.get(f"/api/v1/albums/{SEED_ALBUM}", headers={"Authorization": "Bearer " + session_token(abilities=("read",))})
    assert reader.status_code == 200
    assert reader.get_json()["upload_form"] is None
    uploader = client.get(f"/api/v1/albums/{SEED_ALBUM}", headers={"Authorization": "Bearer " + session_token()})
    assert uploader.get_json()["upload_form"]["params"]["tags"] == SEED_ALBUM
    assert list(uploader.get_json()) == ["id", "public_id", "images_count", "views_count", "upload_form", "organization_id", "thumbnails"]


def test_wrong_method_media_type_and_size_are_json_errors(client, seed_album):
    token = session_token()
    _assert_error(client.get(UPLOAD_DONE, headers={"Authorization": f"Bearer {token}"}), 405, "method_not_allowed")
    _assert_error(client.post(UPLOAD_DONE, data=b"<x/>", content_type="application/xml",
                              headers={"Authorization": f"Bearer {token}"}), 415, "unsupported_media_type")
    _assert_error(client.post(UPLOAD_DONE, data=b"a=" + b"x" * (2 * 1024 * 1024), content_type="application/x-www-form-urlencoded",
                              headers={"Authorization": f"Bearer {token}"}), 413, "payload_too_large")
    _assert_error(client.get("/no/such/page"), 404, "not_found")


def test_only_a_successful_answer_reissues_the_session(client, seed_album):
    """A refused request hands out no fresh credential: X-token only on 2xx."""
    reader = "Bearer " + session_token(abilities=("read",))
    refused = _post(client, reader)  # 403: no image_upload right
    _assert_error(refused, 403, "forbidden")
    assert "X-token" not in refused.headers
    unknown = client.get("/api/v1/albums/UNKNOWN123", headers={"Authorization": "Bearer " + session_token(album="UNKNOWN123")})
    _assert_error(unknown, 404, "album_not_found")
    assert "X-token" not in unknown.headers
    bad_limit = client.get(f"/api/v1/albums/{SEED_ALBUM}/images?limit=0", headers={"Authorization": reader})
    _assert_error(bad_limit, 400, "invalid_parameter")
    assert "X-token" not in bad_limit.headers
    assert "X-token" in client.get(f"/api/v1/albums/{SEED_ALBUM}", headers={"Authorization": reader}).headers


def test_the_403_says_which_right_is_missing(client, seed_album):
    none_here = _post(client, "Bearer " + session_token(album="SOMEOTHERALBUM")).get_json()["error"]["message"]
    assert none_here == f"This token grants no right on album {SEED_ALBUM}."
    no_upload = _post(client, "Bearer " + session_token(abilities=("read",))).get_json()["error"]["message"]
    assert no_upload == f"This token has no 'image_upload' right on album {SEED_ALBUM}."


def test_a_notification_token_is_not_a_session(client, seed_album):
    """The token inside the form's notification_url (same secret, same album) opens nothing."""
    form = _post(client, "Bearer " + session_token()).get_json()["upload_form"]
    notification = form["params"]["notification_url"].split("token=", 1)[1]
    before = row_counts()
    for header in (f"Bearer {notification}", f'Token token="{notification}"'):
        response = _post(client, header)
        _assert_error(response, 401, "unauthorized")
        assert "X-token" not in response.headers
    assert row_counts() == before
    # Nor would one with abilities added: the two kinds' claims exclude each other.
    claims = jwt.decode(notification, TEST_JWT_SECRET, algorithms=["HS256"])
    hybrid = tokens.encode({**claims, "abilities": {SEED_ALBUM: {"Access": {"image_upload": True}}}}, TEST_JWT_SECRET)
    _assert_error(_post(client, f"Bearer {hybrid}"), 401, "unauthorized")
