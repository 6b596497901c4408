"""Schemathesis against the live app, in process, with the suite's real database and Redis.

Every operation of web/openapi.yaml, positive and negative cases, with valid credentials (a
session with every ability on the seed album; for the webhook a notification token plus the
Cloudinary signature of the exact bytes sent). For every case: no 5xx, the response conforms to
the document (Schemathesis's checks and our own checker), and a rejected (4xx) request leaves
every table's row count as it was.

``FUZZ_EXAMPLES`` sets Hypothesis's examples per operation (default 100; e.g. ``FUZZ_EXAMPLES=5000``
for a long run); ``FUZZ_SEED`` fixes the seed.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NotSet

from common import db, tokens
from common.models import Image
from tests.conftest import SEED_ALBUM, SEED_ORG, SEED_USER, TEST_JWT_SECRET, row_counts
from web import create_app, openapi

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
CLOUD_SECRET = "fuzz-cloudinary-secret"
#: The webhook's token names an album that is not in the database: whatever a (possibly running)
#: worker does with an accepted notification, it writes nothing while the cases run.
WEBHOOK_ALBUM = "FUZZWEBHOOKALBUM"
WEBHOOK = "/api/v1/cloudinary"

CONFIG = SchemathesisConfig.from_dict({
    # Requests go to the app in process (``case.call(app=...)``); the URL is what failure reports show.
    "base-url": "http://localhost",
    # The album under test: the tokens grant it; other ids are the auth tests' business.
    "parameters": {"path.album_id": SEED_ALBUM},
    "generation": {"with-security-parameters": False, "max-examples": EXAMPLES},
    # Every check Schemathesis has: data the document calls valid is accepted, data it calls
    # invalid refused, credentials not ignored, undocumented methods 405 with a true Allow...
    # max_response_time only guards against a hang (speed is measured in bench/, not here).
    "checks": {"enabled": True, "max_response_time": 10.0},
    **({"seed": int(os.environ["FUZZ_SEED"])} if os.environ.get("FUZZ_SEED") else {}),
})
schema = schemathesis.openapi.from_dict(copy.deepcopy(openapi.document()), config=CONFIG)
CALLS: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()


def _session_header(style: str) -> str:
    token = tokens.issue_session(SEED_USER, {SEED_ALBUM: tokens.ABILITIES}, TEST_JWT_SECRET, 14400, now=int(time.time()))
    return f'Token token="{token}"' if style == "token" else f"Bearer {token}"


@pytest.fixture
def fuzz_app(settings, seed_album):
    """The app with a known Cloudinary secret, and an album with images in every state, so
    listing, status, duplicates, deletes and reprocessing have something to work on."""
    app = create_app(settings.with_overrides(cloudinary_url=f"cloudinary://key:{CLOUD_SECRET}@cloud"))
    with db.session_scope() as session:
        for n, (meta, thumbs, phash) in enumerate([
            ("done", "done", "f0f0f0f0f0f0f0f0"), ("done", "done", "f0f0f0f0f0f0f0f1"), ("done", "pending", "0f0f0f0f0f0f0f0f"),
            ("pending", "pending", None), ("failed", "pending", None), ("done", "done", "zz"),
        ]):
            session.add(Image(
                album_id=SEED_ALBUM, public_id=f"{SEED_ALBUM}/fuzz{n}", asset_id=f"fuzz-asset-{n}", format="jpg", width=640,
                height=480, bytes=1234, faces=[[1, 2, 3, 4]], colors=[["#FF0000", 50.0]], predominant={"google": []},
                phash=phash, image_metadata={"Make": "Canon"}, metadata_status=meta, thumbnails_status=thumbs,
                thumbnail_url=f"http://cdn.example/{n}.jpg" if thumbs == "done" else None,
                error="boom" if meta == "failed" else None,
            ))
    return app


def _prepare(case: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """Credentials for the case: headers to add and transport kwargs (the webhook's exact body)."""
    path = case.operation.path
    if path == WEBHOOK:
        body = case.body if isinstance(case.body, dict) else None
        if (body is not None and body.get("notification_type") == "upload" and isinstance(body.get("tags"), list)
                and len(body["tags"]) % 2 == 0 and case.meta is not None and case.meta.generation.mode == "positive"):
            body["tags"].append(WEBHOOK_ALBUM)  # half the uploads are for the token's album
        if isinstance(case.body, NotSet):
            raw = b""
        elif isinstance(case.body, (bytes, str)):  # negative cases: bytes that are no JSON at all
            raw = case.body if isinstance(case.body, bytes) else case.body.encode()
        else:
            raw = json.dumps(case.body).encode()
        timestamp = str(int(time.time()))
        token = tokens.notification_token(SEED_USER, WEBHOOK_ALBUM, SEED_ORG, TEST_JWT_SECRET, 14400, now=int(time.time()))
        headers = {
            "X-Cld-Timestamp": timestamp,
            "X-Cld-Signature": hashlib.sha1(raw + timestamp.encode() + CLOUD_SECRET.encode()).hexdigest(),
            "Content-Type": "application/json",
        }
        # As transport params (not in the case's query), so the ignored_auth check knows these
        # credentials are ours, valid, and probes without them and with forged ones.
        return headers, {"data": raw, "params": {"token": token}}
    if case.operation.definition.raw.get("security", [{}]) == []:
        return {}, {}
    # Both header styles of the seed's API, alternately.
    return {"Authorization": _session_header("token" if len(CALLS) % 2 else "bearer")}, {}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
def test_every_operation_survives_fuzzing_and_keeps_its_contract(case, fuzz_app):
    headers, extra = _prepare(case)
    # Checks that send requests of their own (ignored_auth, unsupported_method...) use the
    # transport of the operation's schema: this app, in process.
    case.operation.schema.app = fuzz_app
    before_rows = row_counts()
    before_violations = len(openapi.VIOLATIONS)
    response = case.call(app=fuzz_app, headers=headers, **extra)
    CALLS[f"{case.method} {case.operation.path}"] += 1
    status = response.status_code
    STATUSES[status] += 1
    assert status < 500, f"{case.method} {case.formatted_path} -> {status}: {response.text[:500]}"
    case.validate_response(response, headers=headers, transport_kwargs={"app": fuzz_app, "headers": headers, **extra})
    assert openapi.VIOLATIONS[before_violations:] == []
    if 400 <= status < 500:
        assert row_counts() == before_rows, f"a rejected {case.method} {case.formatted_path} ({status}) wrote rows"


def test_the_fuzzing_ran_hundreds_of_cases():
    """Runs after the parametrized test above (same module, file order)."""
    if not CALLS:
        pytest.skip("the fuzz test did not run in this session")
    total = sum(CALLS.values())
    print(f"\nfuzzed {total} requests; statuses {dict(sorted(STATUSES.items()))}; per operation {dict(CALLS)}")
    documented = {f"{m.upper()} {path}" for path, item in openapi.document()["paths"].items() for m in item if m != "parameters"}
    assert documented <= set(CALLS)
    assert total >= min(300, 5 * EXAMPLES)
    assert any(400 <= status < 500 for status in STATUSES) and any(status < 300 for status in STATUSES)
