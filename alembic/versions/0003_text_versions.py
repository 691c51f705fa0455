"""engine names and versions as TEXT: a real OCR version string is 129 characters

Revision ID: 0003_text_versions
Revises: 0002_workbench
Create Date: 2026-12-03

PostgreSQL refused the sample batch's import (``StringDataRightTruncation``: the RapidOCR
backend's ``template_version`` names its three models and every parameter); SQLite never
enforces lengths, which is how it went unnoticed. On PostgreSQL VARCHAR -> TEXT is a catalogue
change (no table rewrite); on SQLite, batch mode copies the tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_text_versions"
down_revision = "0002_workbench"
branch_labels = None
depends_on = None

#: (table, column, old type): the columns that hold names and versions other systems choose.
WIDENED = (
    ("human_annotations", "author", sa.String(200)),
    ("human_annotations", "template_version", sa.String(64)),
    ("work_items", "ai_author", sa.String(200)),
    ("work_items", "ai_template_version", sa.String(64)),
    ("batch_imports", "imported_by", sa.String(100)),
)


def _alter(to_text: bool) -> None:
    tables: dict[str, list[tuple[str, sa.types.TypeEngine]]] = {}
    for table, column, old in WIDENED:
        tables.setdefault(table, []).append((column, old))
    for table, columns in tables.items():
        with op.batch_alter_table(table) as batch:
            for column, old in columns:
                new, previous = (sa.Text(), old) if to_text else (old, sa.Text())
                batch.alter_column(column, type_=new, existing_type=previous, existing_nullable=False)


def upgrade() -> None:
    _alter(to_text=True)


def downgrade() -> None:
    _alter(to_text=False)
