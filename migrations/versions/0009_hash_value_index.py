"""Duplicates index over distinct pHash values: album_hashes and hash_edges replace duplicate_edges

k photos with the same pHash (a burst, blank photos) had k(k-1)/2 image-to-image edges; now each
distinct value of an album is one ``album_hashes`` row, edges join values (a value with itself
while two or more images share it), and ``image_hashes`` maps images to values. The new tables
are filled here from the old index (its rows and edges), so no rebuild is needed; a database
upgraded across 0005 is filled by ``db upgrade``'s backfill as before.

Plain create/drop only: SQLite rebuilds a table for most other changes, which fails on tables
other rows reference (see 0007).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_BANDS = ", ".join(f"band{n}" for n in range(4))


def upgrade() -> None:
    op.create_table(
        "album_hashes",
        sa.Column("album_id", sa.String(length=64), nullable=False),
        sa.Column("phash", sa.String(length=16), nullable=False),
        *(sa.Column(f"band{n}", sa.Integer(), nullable=False) for n in range(4)),
        sa.Column("image_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(["album_id"], ["albums.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("album_id", "phash"),
    )
    for n in range(4):
        op.create_index(f"ix_album_hashes_band{n}", "album_hashes", ["album_id", f"band{n}"], unique=False)
    op.create_table(
        "hash_edges",
        sa.Column("album_id", sa.String(length=64), nullable=False),
        sa.Column("phash", sa.String(length=16), nullable=False),
        sa.Column("other_phash", sa.String(length=16), nullable=False),
        sa.Column("distance", sa.SmallInteger(), nullable=False),
        sa.Column("image_id", _ID, nullable=False),
        sa.Column("other_id", _ID, nullable=False),
        *(sa.ForeignKeyConstraint(["album_id", end], ["album_hashes.album_id", "album_hashes.phash"], ondelete="CASCADE")
          for end in ("phash", "other_phash")),
        sa.PrimaryKeyConstraint("album_id", "phash", "other_phash"),
    )
    op.create_index("ix_hash_edges_album", "hash_edges", ["album_id", "distance", "image_id", "other_id", "phash"],
                    unique=False)
    op.create_index("ix_hash_edges_other", "hash_edges", ["album_id", "other_phash"], unique=False)
    op.create_index("ix_image_hashes_album_phash", "image_hashes", ["album_id", "phash", "image_id"], unique=False)

    # The old index's content, as values: each distinct value with its first image, a value
    # shared by two or more images, and each old edge between images of distinct values (once
    # per pair of values).
    op.execute(f"INSERT INTO album_hashes (album_id, phash, {_BANDS}, image_id) "
               f"SELECT album_id, phash, {_BANDS}, min(image_id) FROM image_hashes GROUP BY album_id, phash, {_BANDS}")
    op.execute("INSERT INTO hash_edges (album_id, phash, other_phash, distance, image_id, other_id) "
               "SELECT album_id, phash, phash, 0, min(image_id), min(image_id) FROM image_hashes "
               "GROUP BY album_id, phash HAVING count(*) > 1")
    op.execute("INSERT INTO hash_edges (album_id, phash, other_phash, distance, image_id, other_id) "
               "SELECT p.album_id, p.low, p.high, p.distance, low.image_id, high.image_id FROM ("
               "SELECT DISTINCT e.album_id, e.distance, "
               "CASE WHEN a.phash < b.phash THEN a.phash ELSE b.phash END AS low, "
               "CASE WHEN a.phash < b.phash THEN b.phash ELSE a.phash END AS high "
               "FROM duplicate_edges e JOIN image_hashes a ON a.image_id = e.image_id "
               "JOIN image_hashes b ON b.image_id = e.other_id WHERE a.phash <> b.phash) p "
               "JOIN album_hashes low ON low.album_id = p.album_id AND low.phash = p.low "
               "JOIN album_hashes high ON high.album_id = p.album_id AND high.phash = p.high")

    op.drop_table("duplicate_edges")
    for n in range(4):
        op.drop_index(f"ix_image_hashes_band{n}", table_name="image_hashes")


def downgrade() -> None:
    for n in range(4):
        op.create_index(f"ix_image_hashes_band{n}", "image_hashes", ["album_id", f"band{n}"], unique=False)
    op.create_table(
        "duplicate_edges",
        sa.Column("image_id", _ID, nullable=False),
        sa.Column("other_id", _ID, nullable=False),
        sa.Column("album_id", sa.String(length=64), nullable=False),
        sa.Column("distance", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["other_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "other_id"),
    )
    op.create_index("ix_duplicate_edges_album", "duplicate_edges", ["album_id", "distance", "image_id", "other_id"],
                    unique=False)
    op.create_index("ix_duplicate_edges_other", "duplicate_edges", ["other_id"], unique=False)
    # Every pair of images whose values are joined (two images of one value among them).
    op.execute("INSERT INTO duplicate_edges (image_id, other_id, album_id, distance) "
               "SELECT CASE WHEN a.image_id < b.image_id THEN a.image_id ELSE b.image_id END, "
               "CASE WHEN a.image_id < b.image_id THEN b.image_id ELSE a.image_id END, e.album_id, e.distance "
               "FROM hash_edges e "
               "JOIN image_hashes a ON a.album_id = e.album_id AND a.phash = e.phash "
               "JOIN image_hashes b ON b.album_id = e.album_id AND b.phash = e.other_phash "
               "WHERE a.image_id < b.image_id OR (e.phash <> e.other_phash AND a.image_id > b.image_id)")
    op.drop_index("ix_image_hashes_album_phash", table_name="image_hashes")
    op.drop_index("ix_hash_edges_other", table_name="hash_edges")
    op.drop_index("ix_hash_edges_album", table_name="hash_edges")
    op.drop_table("hash_edges")
    for n in range(4):
        op.drop_index(f"ix_album_hashes_band{n}", table_name="album_hashes")
    op.drop_table("album_hashes")
