"""work items carry the editor's context: a video's duration, sampled frames, cuts, audio changes

Revision ID: 0005_item_context
Revises: 0004_sessions_and_throttle
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_item_context"
down_revision = "0004_sessions_and_throttle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_items") as batch:
        batch.add_column(sa.Column("context", sa.Text(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("work_items") as batch:
        batch.drop_column("context")
