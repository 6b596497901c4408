"""The migrations: they build exactly the models' schema, and they upgrade a database that
already holds albums and photos (a batch rebuild of a table that other rows reference fails
there, and only there)."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from common import duplicates, migrate
from common.models import Base

NOW = "2026-01-01 00:00:00"


@pytest.fixture
def empty_database(tmp_path) -> Iterator[str]:
    """A database no migration has touched, of the kind the suite runs on."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"album_migrations_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_migrations_build_the_models_schema(empty_database):
    migrate.upgrade(empty_database)
    engine = create_engine(empty_database)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_a_database_with_photos_upgrades_from_the_first_schema_to_the_last(empty_database):
    migrate.upgrade(empty_database, "0002")
    engine = create_engine(empty_database)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO organizations (id, name, created_at) VALUES ('o', '', :now)"), {"now": NOW})
            conn.execute(text("INSERT INTO albums (id, organization_id, images_count, views_count, thumbnails, "
                              "created_at, updated_at) VALUES ('old', 'o', 3, 0, '[]', :now, :now)"), {"now": NOW})
            for n, phash in enumerate(["f0f0f0f0f0f0f0f0", "f0f0f0f0f0f0f0f1", None, "f0f0f0f0f0f0f0f0"]):
                conn.execute(text("INSERT INTO images (album_id, public_id, type, phash, metadata_status, "
                                  "thumbnails_status, attempts, source, created_at, updated_at) VALUES ('old', :pid, "
                                  "'authenticated', :phash, 'done', 'done', 0, 'webhook', :now, :now)"),
                             {"pid": f"p{n}", "phash": phash, "now": NOW})
        # Step by step, with the rows that later tables reference filled in as the product would.
        for revision in ("0003", "0004", "0005"):
            migrate.upgrade(empty_database, revision)
        with engine.begin() as conn:  # the index as 0005 kept it: an edge per pair of images
            first, second, same = conn.execute(text("SELECT id FROM images WHERE phash IS NOT NULL ORDER BY id")).scalars()
            conn.execute(text("INSERT INTO image_hashes (image_id, album_id, phash, band0, band1, band2, band3) "
                              "SELECT id, album_id, phash, 0, 0, 0, 0 FROM images WHERE phash IS NOT NULL"))
            for a, b, distance in ((first, second, 1), (first, same, 0), (second, same, 1)):
                conn.execute(text("INSERT INTO duplicate_edges (album_id, image_id, other_id, distance) "
                                  "VALUES ('old', :a, :b, :d)"), {"a": a, "b": b, "d": distance})
        migrate.upgrade(empty_database)
        assert migrate.current_revision(empty_database) == migrate.head_revision()
        with engine.connect() as conn:
            kept = conn.execute(text("SELECT public_id, resource_type FROM images ORDER BY id")).all()
            edges = conn.execute(text("SELECT phash, other_phash, distance FROM hash_edges ORDER BY distance")).all()
        with Session(engine) as session:  # 0009 carried the old index over: the same groups
            groups = [duplicates.groups(session, "old", threshold) for threshold in (0, 1)]
    finally:
        engine.dispose()
    assert [tuple(row) for row in kept] == [("p0", "image"), ("p1", "image"), ("p2", "image"), ("p3", "image")]
    assert [tuple(row) for row in edges] == [("f0f0f0f0f0f0f0f0", "f0f0f0f0f0f0f0f0", 0),
                                             ("f0f0f0f0f0f0f0f0", "f0f0f0f0f0f0f0f1", 1)]
    assert groups == [[[first, same]], [[first, second, same]]]
