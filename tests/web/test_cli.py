"""The operator commands, through Flask's CLI runner against the real database."""
from __future__ import annotations

import jwt
import pytest

from common import db
from common.models import Album, Image, Organization
from tests.conftest import SEED_ALBUM, SEED_ORG, TEST_JWT_SECRET, row_counts
from web import create_app


@pytest.fixture
def runner(settings):
    return create_app(settings).test_cli_runner()


def test_orgs_albums_and_tokens(runner):
    org = runner.invoke(args=["orgs", "create", "--name", "Acme"])
    assert org.exit_code == 0, org.output
    org_id = org.output.strip()
    album = runner.invoke(args=["albums", "create", "--id", "ALB1", "--organization", org_id])
    assert album.exit_code == 0, album.output
    with db.session_scope() as session:
        assert session.get(Album, "ALB1").organization_id == org_id
    issued = runner.invoke(args=["tokens", "issue", "--user", "u1", "--album", "ALB1", "--ability", "read", "--ttl", "60"])
    claims = jwt.decode(issued.output.strip(), TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["abilities"] == {"ALB1": {"Access": {"read": True}}}
    assert claims["exp"] - claims["iat"] == 60


def test_bad_input_writes_nothing(runner):
    before = row_counts()
    assert runner.invoke(args=["albums", "create", "--id", "../x", "--organization", "nope"]).exit_code != 0
    assert runner.invoke(args=["albums", "create", "--id", "OK1", "--organization", "nope"]).exit_code != 0
    assert runner.invoke(args=["tokens", "issue", "--user", "u", "--album", "A", "--ability", "root"]).exit_code != 0
    assert row_counts() == before


def test_demo_creates_the_seed_album_once_and_prints_a_working_token(runner):
    first = runner.invoke(args=["demo"])
    second = runner.invoke(args=["demo"])
    assert first.exit_code == 0 and second.exit_code == 0
    with db.session_scope() as session:
        assert session.get(Organization, SEED_ORG) is not None
        assert session.get(Album, SEED_ALBUM) is not None
    assert row_counts()["albums"] == 1
    token = next(line.split()[-1] for line in first.output.splitlines() if line.startswith("token:"))
    claims = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"])
    assert set(claims["abilities"][SEED_ALBUM]["Access"]) == {"image_upload", "read", "manage"}
    assert "/upload_test?album=00100000123BB25&token=" in first.output


def test_reprocess_resets_missing_stages(runner, seed_album):
    with db.session_scope() as session:
        session.add(Image(album_id=SEED_ALBUM, public_id="p-failed", metadata_status="failed", thumbnails_status="done", error="boom"))
        session.add(Image(album_id=SEED_ALBUM, public_id="p-ready", metadata_status="done", thumbnails_status="done"))
    result = runner.invoke(args=["albums", "reprocess", SEED_ALBUM])
    assert result.exit_code == 0, result.output
    assert "1 images, 1 tasks enqueued" in result.output
    with db.session_scope() as session:
        failed = session.query(Image).filter_by(public_id="p-failed").one()
        assert (failed.metadata_status, failed.error) == ("pending", None)
    result = runner.invoke(args=["albums", "reprocess", SEED_ALBUM, "--all"])
    assert "2 images, 4 tasks enqueued" in result.output


def test_db_upgrade_is_idempotent(runner):
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
