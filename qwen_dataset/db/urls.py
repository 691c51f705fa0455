"""Database URLs, without importing SQLAlchemy: the code location names its database when it
loads, and connects (:mod:`qwen_dataset.db.engine`) only in the steps that use it."""

from __future__ import annotations

from pathlib import Path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).expanduser().resolve()}"
