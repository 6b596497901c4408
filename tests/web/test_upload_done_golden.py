"""The seed, byte for byte: the recorded upload_done request replayed at its recorded time."""
from __future__ import annotations

import json

import cloudinary.utils
import jwt
import pytest
import time_machine

from common import tokens
from tests.conftest import SEED_ALBUM, SEED_ORG, SEED_USER
from tests.seed import SEED_BODY, SEED_NOTIFICATION_TOKEN_HEAD, SEED_REQUEST_TOKEN, SEED_RESPONSE_HEADERS, SEED_TIME
from web import create_app

#: Headers whose value is the same on every request (X-Request-Id, X-Runtime and X-token's
#: signature differ per request and deployment; they are checked separately below).
SEED_HEADERS = {k: v for k, v in SEED_RESPONSE_HEADERS.items() if k not in ("X-token", "X-Request-Id", "X-Runtime")}
CLOUD_SECRET = "golden-test-cloudinary-secret"


@pytest.fixture
def seed_app(settings):
    return create_app(settings.with_overrides(
        cloudinary_url=f"cloudinary://123123123123:{CLOUD_SECRET}@sadaasdasd",
        public_url="https://localhost:5001",
    ))


def expected_body(jwt_secret: str) -> bytes:
    """The seed body, compact, with the two secret-dependent signatures computed here."""
    body = json.loads(SEED_BODY)
    params = body["upload_form"]["params"]
    claims = jwt.decode(params["notification_url"].split("token=")[1], options={"verify_signature": False})
    fresh_token = jwt.encode(claims, jwt_secret, algorithm="HS256", headers={"typ": "JWT", "alg": "HS256"}, sort_headers=False)
    assert fresh_token.rsplit(".", 1)[0] == SEED_NOTIFICATION_TOKEN_HEAD
    params["notification_url"] = params["notification_url"].split("token=")[0] + "token=" + fresh_token
    signed = {k: v for k, v in params.items() if k not in ("signature", "api_key")}
    params["signature"] = cloudinary.utils.api_sign_request(signed, CLOUD_SECRET)
    return json.dumps(body, separators=(",", ":")).encode()


def test_upload_done_matches_the_seed_byte_for_byte(seed_app, seed_album, settings):
    # The client's token, signed with this deployment's secret (same header and claims as the seed's).
    claims = jwt.decode(SEED_REQUEST_TOKEN, options={"verify_signature": False})
    token = tokens.encode(claims, settings.jwt_secret)
    assert token.rsplit(".", 1)[0] == SEED_REQUEST_TOKEN.rsplit(".", 1)[0]

    with time_machine.travel(SEED_TIME, tick=False):
        response = seed_app.test_client().post(
            f"/api/v1/albums/{SEED_ALBUM}/upload_done",
            headers={"Authorization": f'Token token="{token}"', "Host": "example.org"},
            content_type="application/x-www-form-urlencoded",
        )

    assert response.status_code == 200
    assert response.data == expected_body(settings.jwt_secret)
    for name, value in SEED_HEADERS.items():
        assert response.headers.get(name) == value, name
    # Re-issued at the token's own iat, the session is the request's token again.
    assert response.headers["X-token"].rsplit(".", 1)[0] == SEED_REQUEST_TOKEN.rsplit(".", 1)[0]
    assert response.headers["X-Request-Id"]
    assert float(response.headers["X-Runtime"]) >= 0


def test_the_seed_signature_is_cloudinarys_own_rule():
    """The signature is the SDK's api_sign_request over the params, booleans as "1"."""
    params = {"colors": 1, "faces": 1, "image_metadata": 1, "phash": 1, "tags": "x", "timestamp": 1, "type": "authenticated"}
    from_sdk_bools = cloudinary.utils.api_sign_request(
        cloudinary.utils.cleanup_params({k: (True if v == 1 else v) for k, v in params.items()}), "s"
    )
    assert cloudinary.utils.api_sign_request(params, "s") == from_sdk_bools
