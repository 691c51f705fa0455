"""work items carry what the annotator's queue shows: the uploaded file's name and a picture to thumbnail

Revision ID: 0007_item_source_name
Revises: 0006_gate_waivers
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_item_source_name"
down_revision = "0006_gate_waivers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_items") as batch:
        batch.add_column(sa.Column("source_name", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("preview_uri", sa.String(300), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("work_items") as batch:
        batch.drop_column("preview_uri")
        batch.drop_column("source_name")
