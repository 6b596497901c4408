"""Duplicates index: images' pHash bands and the near-duplicate edges between them

The index is filled as photos are processed (the album.index_duplicates task); existing albums
are filled by `flask --app web albums index-duplicates --all`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "image_hashes",
        sa.Column("image_id", _ID, nullable=False),
        sa.Column("album_id", sa.String(length=64), nullable=False),
        sa.Column("phash", sa.String(length=16), nullable=False),
        *(sa.Column(f"band{n}", sa.Integer(), nullable=False) for n in range(4)),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id"),
    )
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


def downgrade() -> None:
    op.drop_index("ix_duplicate_edges_other", table_name="duplicate_edges")
    op.drop_index("ix_duplicate_edges_album", table_name="duplicate_edges")
    op.drop_table("duplicate_edges")
    for n in range(4):
        op.drop_index(f"ix_image_hashes_band{n}", table_name="image_hashes")
    op.drop_table("image_hashes")
