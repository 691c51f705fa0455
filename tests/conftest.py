"""Shared fixtures: a throw-away PostgreSQL database on the real server, and the sample batch."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

POSTGRES_ADMIN_URL = os.environ.get("QWEN_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@pytest.fixture()
def postgres_url():
    """A fresh database on the PostgreSQL server, dropped afterwards.

    The suite needs the server (CI has it); set QWEN_SKIP_POSTGRES=1 to skip these tests on a
    laptop without one.
    """
    if os.environ.get("QWEN_SKIP_POSTGRES") == "1":
        pytest.skip("QWEN_SKIP_POSTGRES=1")
    name = f"qwen_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """The generated sample batch, once per session: ``(folder, truth)``. Tests copy the folder, never change it."""
    from tests.ops_helpers import sample_batch

    return sample_batch(tmp_path_factory)
