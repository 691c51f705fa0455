"""review workbench: users, API tokens, settings, template overrides, batches, work items

Revision ID: 0002_workbench
Revises: 0001_human_annotations
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_workbench"
down_revision = "0001_human_annotations"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("last_used_at", _WHEN, nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "workbench_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("updated_at", _WHEN, nullable=False),
    )
    op.create_table(
        "template_overrides",
        sa.Column("task", sa.String(32), primary_key=True),
        sa.Column("template_yaml", sa.Text(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("schema_json", sa.Text(), nullable=False),
        sa.Column("example_json", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("updated_at", _WHEN, nullable=False),
    )
    op.create_table(
        "batch_imports",
        sa.Column("batch", sa.String(200), primary_key=True),
        sa.Column("double_rate", sa.String(32), nullable=False),
        sa.Column("seed", sa.String(64), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("imported_by", sa.String(100), nullable=False),
        sa.Column("imported_at", _WHEN, nullable=False),
    )
    op.create_table(
        "work_items",
        sa.Column("item_id", sa.String(64), primary_key=True),
        sa.Column("batch", sa.String(200), nullable=False),
        sa.Column("frame_id", sa.String(64), nullable=False),
        sa.Column("upload_id", sa.String(64), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("blob_uri", sa.String(300), nullable=False),
        sa.Column("ai_annotation_id", sa.String(64), nullable=False),
        sa.Column("ai_author", sa.String(200), nullable=False),
        sa.Column("ai_template_version", sa.String(64), nullable=False),
        sa.Column("ai_status", sa.String(16), nullable=False),
        sa.Column("ai_error", sa.Text(), nullable=False),
        sa.Column("ai_payload", sa.Text(), nullable=False),
        sa.Column("double_blind", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("disagreement", sa.Text(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    op.create_index("ix_work_items_batch", "work_items", ["batch"])
    op.create_index("ix_work_items_status", "work_items", ["status"])
    with op.batch_alter_table("human_annotations") as batch:
        batch.add_column(sa.Column("item_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("assignee_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("slot", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("note", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("submitted_at", _WHEN, nullable=True))
        batch.create_foreign_key("fk_human_annotations_item_id", "work_items", ["item_id"], ["item_id"])
        batch.create_foreign_key("fk_human_annotations_assignee_id", "users", ["assignee_id"], ["id"])
        batch.create_index("ix_human_annotations_item_id", ["item_id"])
        batch.create_index("ix_human_annotations_assignee_id", ["assignee_id"])


def downgrade() -> None:
    with op.batch_alter_table("human_annotations") as batch:
        batch.drop_index("ix_human_annotations_assignee_id")
        batch.drop_index("ix_human_annotations_item_id")
        batch.drop_constraint("fk_human_annotations_assignee_id", type_="foreignkey")
        batch.drop_constraint("fk_human_annotations_item_id", type_="foreignkey")
        for column in ("submitted_at", "note", "slot", "assignee_id", "item_id"):
            batch.drop_column(column)
    for table in ("work_items", "batch_imports", "template_overrides", "workbench_settings", "api_tokens", "users"):
        op.drop_table(table)
