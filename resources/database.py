"""The annotation database resource (SQLite file by default, PostgreSQL by URL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

_ENGINES: dict[str, Engine] = {}


class AnnotationDatabaseResource(ConfigurableResource):
    """SQLAlchemy URL of the annotation database (``QWEN_DATABASE_URL``)."""

    url: str = Field(
        default="sqlite:///.storage/annotations.db",
        description="e.g. sqlite:///path/annotations.db or postgresql+psycopg2://user@host:5432/db",
    )

    def engine(self) -> Engine:
        # One engine (and connection pool) per URL and process, shared by every asset.
        if self.url not in _ENGINES:
            # SQLAlchemy and the migrations load with the first step that uses the database, not
            # with the code location (every code server and run worker imports it).
            from qwen_dataset.db.engine import make_engine

            _ENGINES[self.url] = make_engine(self.url)
        return _ENGINES[self.url]
