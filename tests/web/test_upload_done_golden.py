"""The seed, byte for byte: the recorded upload_done request replayed at its recorded time."""
from __future__ import annotations

import json

import cloudinary.utils
import jwt
import pytest
import time_machine

from common import tokens
from tests.conftest import SEED_ALBUM, SEED_ORG, SEED_USER
from web import create_app

SEED_TIME = 1554745125
SEED_REQUEST_TOKEN = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjE1NTQ3NTk1MjUsImlhdCI6MTU1NDc0NTEyNSwidXNlcl9pZCI6ImJjYTVlYTEwLTZlMDYtNDZiYi1hMTYwLWQ1ZmI2NjlhMjc3NCIsImFiaWxpdGllcyI6eyIwMDEwMDAwMDEyM0JCMjUiOnsiQWNjZXNzIjp7ImltYWdlX3VwbG9hZCI6dHJ1ZX19fX0"
    ".guKk5l1ISUrpcWz2Q4VI4RDBqgP8oJ6TukHMmE1X9IM"
)
SEED_NOTIFICATION_TOKEN_HEAD = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjE1NTQ3NTk1MjUsImlhdCI6MTU1NDc0NTEyNSwidXNlcl9pZCI6ImJjYTVlYTEwLTZlMDYtNDZiYi1hMTYwLWQ1ZmI2NjlhMjc3NCIsImFsYnVtX2lkIjoiMDAxMDAwMDAxMjNCQjI1Iiwib3JnYW5pemF0aW9uX2lkIjoiMjMyNjc4Y2EtNjBjNy00YmFlLWE5YjItODhlNTVkNGFlY2RjIn0"
)
# The seed's response body as recorded (pretty-printed there; the wire form is compact).
SEED_BODY = """{
  "id": "00100000123BB25",
  "public_id": "00100000123BB25",
  "images_count": 0,
  "views_count": 0,
  "upload_form": {
    "url": "https://api.cloudinary.com/v1_1/sadaasdasd/auto/upload",
    "expires_at": 1555349925,
    "name": "00100000123BB25",
    "id": "232678ca-60c7-4bae-a9b2-88e55d4aecdc-00100000123BB25",
    "params": {
      "colors": 1,
      "faces": 1,
      "image_metadata": 1,
      "notification_url": "https://localhost:5001/api/v1/cloudinary?token=eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjE1NTQ3NTk1MjUsImlhdCI6MTU1NDc0NTEyNSwidXNlcl9pZCI6ImJjYTVlYTEwLTZlMDYtNDZiYi1hMTYwLWQ1ZmI2NjlhMjc3NCIsImFsYnVtX2lkIjoiMDAxMDAwMDAxMjNCQjI1Iiwib3JnYW5pemF0aW9uX2lkIjoiMjMyNjc4Y2EtNjBjNy00YmFlLWE5YjItODhlNTVkNGFlY2RjIn0.A9v0CAMAVWPMUIc1Vfoye2F-oRxuFQvpUISjvoQgc60",
      "phash": 1,
      "tags": "00100000123BB25",
      "timestamp": 1555349925,
      "type": "authenticated",
      "signature": "be2e6ad309dfd26b130e6d92e472e498114b752c",
      "api_key": "123123123123"
    },
    "test_url": "/upload_test"
  },
  "organization_id": "232678ca-60c7-4bae-a9b2-88e55d4aecdc",
  "thumbnails": [

  ]
}"""
SEED_HEADERS = {
    "Cache-Control": "no-cache, no-store",
    "Pragma": "no-cache",
    "Expires": "Fri, 01 Jan 1990 00:00:00 GMT",
    "Content-Type": "application/json; charset=utf-8",
    "Vary": "Accept-Encoding",
    "P3P": 'CP="NOI ADM DEV PSAi COM NAV OUR OTRo STP IND DEM"',
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-XSS-Protection": "1; mode=block",
    "X-Download-Options": "noopen",
    "X-Permitted-Cross-Domain-Policies": "none",
    "Referrer-Policy": "origin-when-cross-origin, strict-origin-when-cross-origin",
    "Content-Length": "963",
}
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
