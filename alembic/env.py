"""Alembic environment of the annotation database.

``make_engine`` passes its open connection in ``config.attributes["connection"]``; the ``alembic``
command line connects to ``QWEN_DATABASE_URL`` (default ``sqlite:///.storage/annotations.db``).
"""

from __future__ import annotations

import os

from alembic import context
from qwen_dataset.db.engine import make_engine
from qwen_dataset.db.models import Base

DEFAULT_URL = "sqlite:///.storage/annotations.db"
target_metadata = Base.metadata


def _run(connection) -> None:
    # Batch mode: SQLite cannot ALTER constraints, so Alembic copies the table instead.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("QWEN_DATABASE_URL", DEFAULT_URL)
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("QWEN_DATABASE_URL", DEFAULT_URL)
    engine = make_engine(url, migrate=False)  # creates a SQLite file's folder, sets its pragmas
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
