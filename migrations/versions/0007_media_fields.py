"""images: resource_type, duration, original_filename, etag, duplicate_of; albums.expects_videos

Videos and raw files go through the same signed form as photos (``auto/upload``): each asset
keeps its Cloudinary resource type, which every later call on it must name. ``etag`` (with the
album) finds a second upload of the same bytes; ``duplicate_of`` records which image it repeats.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs, not batch mode: SQLite adds them in place, while a batch rebuild of
    # ``images``/``albums`` drops the old table, which foreign keys from rows of other tables
    # (image_hashes, duplicate_edges, images) forbid on a database that has data.
    id_type = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    op.add_column("images", sa.Column("resource_type", sa.String(16), nullable=False, server_default="image"))
    op.add_column("images", sa.Column("duration", sa.Float(), nullable=True))
    op.add_column("images", sa.Column("original_filename", sa.String(255), nullable=True))
    op.add_column("images", sa.Column("etag", sa.String(64), nullable=True))
    op.add_column("images", sa.Column("duplicate_of", id_type, nullable=True))
    op.create_index("ix_images_album_etag", "images", ["album_id", "etag"])
    op.add_column("albums", sa.Column("expects_videos", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("albums", schema=None) as batch_op:
        batch_op.drop_column("expects_videos")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_album_etag")
        for column in ("duplicate_of", "etag", "original_filename", "duration", "resource_type"):
            batch_op.drop_column(column)
