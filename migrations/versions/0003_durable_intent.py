"""Durable intent: what the pipeline still owes lives in the database, not only in the queue

images.due_at / pending_since drive re-dispatch and retries; albums record requested
reconciles, a running reconcile's progress, the incremental-reconcile watermark, forms issued
and the last recount.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_images_due_at", ["due_at"], unique=False)
        batch_op.create_index("ix_images_updated_at", ["updated_at"], unique=False)
    with op.batch_alter_table("albums", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reconcile_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reconcile_watermark", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("full_reconciled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reconcile_progress", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("form_issued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("counted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_albums_form_issued_at", ["form_issued_at"], unique=False)
    # Work already pending when this runs is due at once: the heal task picks it up.
    op.execute(
        "UPDATE images SET due_at = updated_at, pending_since = created_at "
        "WHERE deleted_at IS NULL AND (metadata_status = 'pending' OR thumbnails_status = 'pending')"
    )


def downgrade() -> None:
    with op.batch_alter_table("albums", schema=None) as batch_op:
        batch_op.drop_index("ix_albums_form_issued_at")
        for column in ("counted_at", "form_issued_at", "reconcile_progress", "full_reconciled_at", "reconcile_watermark", "reconcile_requested_at"):
            batch_op.drop_column(column)
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_updated_at")
        batch_op.drop_index("ix_images_due_at")
        batch_op.drop_column("pending_since")
        batch_op.drop_column("due_at")
