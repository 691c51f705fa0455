"""Connecting to the annotation database and keeping its schema current.

A SQLite file by default, PostgreSQL by URL (``postgresql+psycopg2://user@host/db``). Schema changes
are Alembic migrations (``alembic/versions/``); :func:`make_engine` upgrades the database to the
newest revision before returning, so every process (the Dagster code location, the workbench, a
test) sees the schema its code expects. A database created before migrations existed (only
``human_annotations``, made by ``create_all``) is stamped at the first revision and upgraded from
there. ``alembic upgrade head`` with ``QWEN_DATABASE_URL`` set does the same by hand.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import (
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError

from qwen_dataset.db.urls import sqlite_url as sqlite_url  # re-exported: its home before db.urls

REPO_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = REPO_ROOT / "alembic"
ALEMBIC_INI = REPO_ROOT / "alembic.ini"

#: The revision whose schema equals what ``create_all`` made before migrations existed.
BASELINE_REVISION = "0001_human_annotations"

# Any constant works: it only has to be the same in every process migrating the same server.
_PG_MIGRATION_LOCK = 0x51_57_45_4E


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers work while one writer commits; busy_timeout makes a second writer wait
    # instead of failing at once with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


#: A pooled connection that sat unused longer than this is pinged before it is handed out.
PING_AFTER_IDLE_S = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    """Ping a pooled connection before use when it sat idle over :data:`PING_AFTER_IDLE_S`.

    What ``pool_pre_ping`` guards against (a database restart, an idle timeout that closed the
    connection) happens to connections that wait in the pool, not to those in constant use; a
    ping on every checkout cost a round trip per request. A failed ping raises
    ``DisconnectionError``: the pool drops that connection and hands out a fresh one. (A SQLite
    file has no server to lose, so its connections are never pinged.)
    """
    dbapi_error = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _handed_out(dbapi_connection, record, _proxy) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()
        except dbapi_error as error:
            raise DisconnectionError(
                f"a pooled connection idle for {time.monotonic() - idle_since:.0f} s is gone"
            ) from error


def make_engine(url: str, *, migrate: bool = True, pool_size: int | None = None) -> Engine:
    """Engine for ``url`` with the schema migrated to the newest Alembic revision (idempotent).

    ``pool_size``: connections kept open, and as many again allowed on top when all are busy
    (SQLAlchemy's default is 5 + 10). Safe to call from several processes at once: migrations run
    under a lock (a PostgreSQL advisory lock, a file lock beside a SQLite file).
    """
    is_sqlite = url.startswith("sqlite")
    in_memory = url in ("sqlite://", "sqlite:///:memory:")
    if url.startswith("sqlite:///") and not in_memory:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # An in-memory SQLite database lives in one connection; its pool takes no sizes.
    pool = {"pool_size": pool_size, "max_overflow": pool_size} if pool_size is not None and not in_memory else {}
    engine = create_engine(url, **pool)
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        _ping_idle_connections(engine)
    if migrate:
        upgrade_to_head(engine)
    return engine


#: The driver's own autocommit switch, per dialect: (attribute, value meaning "autocommit").
_AUTOCOMMIT_SWITCH = {"postgresql": ("autocommit", True), "sqlite": ("isolation_level", None)}


@contextmanager
def autocommit_connection(engine: Engine) -> Iterator[Connection]:
    """A pooled connection on which every statement commits by itself.

    For work that is one statement of its own (a primary-key read, a conditional UPDATE that is
    its own consistency check): on PostgreSQL it saves the BEGIN and COMMIT round trips around
    it. The switch is the driver's client-side flag (psycopg2 ``autocommit``, sqlite3
    ``isolation_level``), set back before the connection returns to the pool: SQLAlchemy's
    ``isolation_level`` option resets the level through the driver on every return instead, and
    under load those calls cost more than the round trips saved (0.78 s for 300 saves).
    """
    attribute, on = _AUTOCOMMIT_SWITCH.get(engine.dialect.name, (None, None))
    with engine.connect() as connection:
        if attribute is None:  # another database: SQLAlchemy's portable (slower) way
            connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection
            return
        driver = connection.connection.driver_connection
        before = getattr(driver, attribute)
        setattr(driver, attribute, on)
        try:
            yield connection
        finally:
            setattr(driver, attribute, before)


def alembic_config(connection: Connection | None = None):
    """The Alembic configuration of this project; ``connection`` is handed to ``env.py``."""
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.exists() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK})
                connection.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade_to_head(engine: Engine) -> None:
    """Run every pending migration; a pre-migration database is stamped at the baseline first."""
    from alembic import command

    with _migration_lock(engine), engine.connect() as connection:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it and dropping the original; with foreign keys on,
            # dropping work_items would fail (or cascade) while human_annotations refers to it.
            # The pragma only takes effect outside a transaction, hence before begin().
            _foreign_keys(connection, on=False)
        try:
            with connection.begin():
                tables = set(inspect(connection).get_table_names())
                config = alembic_config(connection)
                if "alembic_version" not in tables and "human_annotations" in tables:
                    command.stamp(config, BASELINE_REVISION)
                command.upgrade(config, "head")
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:
                _foreign_keys(connection, on=True)


def _foreign_keys(connection: Connection, on: bool) -> None:
    # pysqlite opens its own transaction only before DML, so the pragma runs outside one here.
    connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    connection.commit()


def _check_foreign_keys(connection: Connection) -> None:
    """What SQLite's own table-alteration procedure ends with: no row may point nowhere."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(
            f"the migration left {len(broken)} row(s) whose foreign key points nowhere (first: {broken[0]}); "
            "the database was not changed: restore a backup or report this"
        )
