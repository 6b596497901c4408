"""The operator commands, through Flask's CLI runner against the real database."""
from __future__ import annotations

import jwt
import pytest
from sqlalchemy import select

from common import db, migrate
from common.models import Album, Image, Organization
from tests.conftest import SEED_ALBUM, SEED_ORG, TEST_JWT_SECRET, row_counts
from web import create_app


@pytest.fixture
def runner(settings):
    return create_app(settings).test_cli_runner()


def test_orgs_albums_and_tokens(runner):
    fixed = runner.invoke(args=["orgs", "create", "--id", SEED_ORG, "--name", "Seed"])
    assert fixed.exit_code == 0 and fixed.output.strip() == SEED_ORG
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


@pytest.mark.parametrize("args", [
    ["albums", "create", "--id", "../x", "--organization", "nope"],
    ["albums", "create", "--id", "OK1", "--organization", "nope"],
    ["orgs", "create", "--id", "not-a-uuid"],
    ["orgs", "create", "--name", "n" * 201],
    ["tokens", "issue", "--user", "u", "--album", SEED_ALBUM, "--ability", "root"],
    ["tokens", "issue", "--user", "u", "--album", SEED_ALBUM, "--ttl", "-5"],
    ["tokens", "issue", "--user", "u", "--album", SEED_ALBUM, "--ttl", "0"],
    ["tokens", "issue", "--user", "u", "--album", SEED_ALBUM, "--ttl", str(365 * 86400)],
    ["tokens", "issue", "--user", "", "--album", SEED_ALBUM],
    ["tokens", "issue", "--user", "u" * 65, "--album", SEED_ALBUM],
    ["tokens", "issue", "--user", "u", "--album", "NOSUCHALBUM"],
    ["tokens", "issue", "--user", "u", "--album", "../etc"],
    ["demo", "--ttl", "-1"],
    ["albums", "reprocess", "NOSUCHALBUM"],
    ["albums", "reconcile", "NOSUCHALBUM"],
    ["albums", "reprocess", SEED_ALBUM, "--wait", "--timeout", "0"],
], ids=lambda args: " ".join(a[:12] for a in args))
def test_bad_input_is_a_usage_error_and_writes_nothing(runner, seed_album, args):
    before = row_counts()
    result = runner.invoke(args=args)
    assert result.exit_code == 2, result.output  # click's usage error, with the parameter named
    assert "Invalid value" in result.output or "Error" in result.output
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
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0
    assert result.output.strip() == f"database already at the latest migration ({migrate.head_revision()})"


def test_db_upgrade_of_a_new_database_says_it_created_it(settings, tmp_path):
    fresh = create_app(settings.with_overrides(database_url=f"sqlite:///{tmp_path / 'new.db'}"))
    try:
        first = fresh.test_cli_runner().invoke(args=["db", "upgrade"])
        again = fresh.test_cli_runner().invoke(args=["db", "upgrade"])
    finally:
        db.configure(settings.database_url)  # create_app switched the process engine to the new file
    head = migrate.head_revision()
    assert first.exit_code == 0, first.output
    assert first.output.strip() == f"database upgraded from nothing (new database) to {head} (latest)"
    assert again.output.strip() == f"database already at the latest migration ({head})"


def test_db_upgrade_across_the_duplicates_index_files_the_old_photos(settings, tmp_path):
    """A database from before the index (0004) with photos already hashed: the upgrade itself
    fills the index, so /duplicates answers for old albums without an operator step."""
    from sqlalchemy import create_engine, text

    from common import duplicates

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0004")
    old = create_engine(url)
    with old.begin() as conn:
        now = "2026-01-01 00:00:00"
        conn.execute(text("INSERT INTO organizations (id, name, created_at) VALUES ('o', '', :now)"), {"now": now})
        conn.execute(text("INSERT INTO albums (id, organization_id, images_count, views_count, thumbnails, created_at, "
                          "updated_at) VALUES ('old-album', 'o', 3, 0, '[]', :now, :now)"), {"now": now})
        for n, phash in enumerate(["f0f0f0f0f0f0f0f0", "f0f0f0f0f0f0f0f1", "0f0f0f0f0f0f0f0f"]):
            conn.execute(text("INSERT INTO images (album_id, public_id, type, phash, metadata_status, thumbnails_status, "
                              "attempts, source, created_at, updated_at) VALUES ('old-album', :pid, 'authenticated', "
                              ":phash, 'done', 'done', 0, 'webhook', :now, :now)"),
                         {"pid": f"old-{n}", "phash": phash, "now": now})
    old.dispose()
    app = create_app(settings.with_overrides(database_url=url))
    try:
        result = app.test_cli_runner().invoke(args=["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert "3 photos indexed in 1 album(s)" in result.output
        with db.session_scope() as session:
            ids = sorted(session.scalars(select(Image.id).where(Image.public_id.in_(["old-0", "old-1"]))).all())
            assert duplicates.groups(session, "old-album", 6) == [ids]
    finally:
        db.configure(settings.database_url)  # create_app switched the process engine to the old file


def test_reconcile_queues_the_reconcile_task(runner, seed_album):
    """The CLI does not list Cloudinary itself: it hands the album to the worker's task."""
    from celery.signals import before_task_publish

    sent: list[tuple[str, object]] = []

    def record(sender=None, body=None, **_):
        sent.append((sender, list(body[0])))

    before_task_publish.connect(record, weak=False)
    try:
        result = runner.invoke(args=["albums", "reconcile", SEED_ALBUM])
    finally:
        before_task_publish.disconnect(record)
    assert result.exit_code == 0, result.output
    assert sent == [("album.reconcile", [SEED_ALBUM])]


def test_wait_gives_up_at_the_timeout_with_its_own_status(runner, seed_album):
    """No worker consumes this test's queue: --wait stops at --timeout, exit 3, saying why."""
    with db.session_scope() as session:
        session.add(Image(album_id=SEED_ALBUM, public_id="p-pending", metadata_status="failed", thumbnails_status="done"))
    result = runner.invoke(args=["albums", "reprocess", SEED_ALBUM, "--wait", "--timeout", "1"])
    assert result.exit_code == 3, result.output
    assert "gave up after 1 s: 1 of 1 photos still processing" in result.output


def test_index_duplicates_backfills_the_groups_with_a_bar(runner, seed_album):
    from common import duplicates

    with db.session_scope() as session:  # photos processed before the index existed
        session.add_all(Image(album_id=SEED_ALBUM, public_id=f"old-{n}", phash=phash, metadata_status="done")
                        for n, phash in enumerate(["f0f0f0f0f0f0f0f0", "f0f0f0f0f0f0f0f1", "0f0f0f0f0f0f0f0f", None]))
    with db.session_scope() as session:
        assert duplicates.groups(session, SEED_ALBUM, 6) == []
    result = runner.invoke(args=["albums", "index-duplicates", SEED_ALBUM])
    assert result.exit_code == 0, result.output
    assert "3 photos indexed in 1 album(s)" in result.output and "indexed" in result.output
    with db.session_scope() as session:
        ids = sorted(session.scalars(select(Image.id).where(Image.public_id.in_(["old-0", "old-1"]))).all())
        assert duplicates.groups(session, SEED_ALBUM, 6) == [ids]
    again = runner.invoke(args=["albums", "index-duplicates", "--all"])
    assert again.exit_code == 0 and "3 photos indexed in 1 album(s)" in again.output
    for args in (["albums", "index-duplicates"], ["albums", "index-duplicates", SEED_ALBUM, "--all"],
                 ["albums", "index-duplicates", "NOPE"]):
        assert runner.invoke(args=args).exit_code == 2
