"""human_annotations: the table the pipeline reads (the schema before migrations existed)

Revision ID: 0001_human_annotations
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_human_annotations"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "human_annotations",
        sa.Column("annotation_id", sa.String(64), primary_key=True),
        sa.Column("frame_id", sa.String(64), nullable=False),
        sa.Column("upload_id", sa.String(64), nullable=False),
        sa.Column("batch", sa.String(200), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("template_version", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_human_annotations_frame_id", "human_annotations", ["frame_id"])
    op.create_index("ix_human_annotations_batch", "human_annotations", ["batch"])
    op.create_index("ix_human_annotations_state", "human_annotations", ["state"])


def downgrade() -> None:
    op.drop_table("human_annotations")
