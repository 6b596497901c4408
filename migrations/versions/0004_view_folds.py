"""view_folds: batches of album views already folded into albums.views_count

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "view_folds",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("folded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_view_folds_folded_at"), "view_folds", ["folded_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_view_folds_folded_at"), table_name="view_folds")
    op.drop_table("view_folds")
