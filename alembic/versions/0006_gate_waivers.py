"""gate waivers: an admin's recorded decision to let a batch through a failed quality figure

Revision ID: 0006_gate_waivers
Revises: 0005_item_context
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_gate_waivers"
down_revision = "0005_item_context"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gate_waivers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("batch", sa.String(200), nullable=False),
        sa.Column("figure", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("waived_by", sa.String(64), nullable=False),
        sa.Column("waived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("target", sa.Float(), nullable=True),
        sa.Column("revoked_by", sa.String(64), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_gate_waivers_batch", "gate_waivers", ["batch"])


def downgrade() -> None:
    op.drop_index("ix_gate_waivers_batch", table_name="gate_waivers")
    op.drop_table("gate_waivers")
