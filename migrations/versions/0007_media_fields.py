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
    id_type = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resource_type", sa.String(16), nullable=False, server_default="image"))
        batch_op.add_column(sa.Column("duration", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("original_filename", sa.String(255), nullable=True))
        batch_op.add_column(sa.Column("etag", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("duplicate_of", id_type, nullable=True))
        batch_op.create_index("ix_images_album_etag", ["album_id", "etag"])
    with op.batch_alter_table("albums", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expects_videos", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("albums", schema=None) as batch_op:
        batch_op.drop_column("expects_videos")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_album_etag")
        for column in ("duplicate_of", "etag", "original_filename", "duration", "resource_type"):
            batch_op.drop_column(column)
