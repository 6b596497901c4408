"""Change numbers: albums.change_seq and images.change_seq, the cursor of GET /changes

Existing images take their id as change number (increasing within each album) and each album
its largest, so the numbers carry on from there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("albums", schema=None) as batch_op:
        batch_op.add_column(sa.Column("change_seq", sa.BigInteger(), server_default="0", nullable=False))
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("change_seq", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.create_index("ix_images_album_change", ["album_id", "change_seq"], unique=False)
    op.execute("UPDATE images SET change_seq = id")
    op.execute("UPDATE albums SET change_seq = COALESCE((SELECT MAX(images.id) FROM images "
               "WHERE images.album_id = albums.id), 0)")


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_album_change")
        batch_op.drop_column("change_seq")
    with op.batch_alter_table("albums", schema=None) as batch_op:
        batch_op.drop_column("change_seq")
