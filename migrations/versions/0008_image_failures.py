"""images.failures: transient failures in a row, apart from re-sends

The retry backoff grew with every dispatch of an image's work, re-sends included: a photo whose
message a Redis restart lost, then whose worker was killed, waited 2.25x longer at each later
Cloudinary 5xx. Failures in a row (reset when a stage finishes) now drive the backoff; re-sends
(``attempts``) only lengthen the lease.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (see 0007: no batch rebuild of a table others reference).
    op.add_column("images", sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("failures")
