"""Command line of the workbench.

``python -m qwen_dataset.workbench serve [--host 127.0.0.1] [--port 8080] [--workers N]``
``python -m qwen_dataset.workbench create-user NAME --role admin`` (password from
``QWEN_WORKBENCH_PASSWORD`` or asked for)
``python -m qwen_dataset.workbench create-token NAME`` (prints the token once)
``python -m qwen_dataset.workbench import-batch BATCH``
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import os
import sys

from fastapi import HTTPException
from sqlalchemy.orm import Session

from qwen_dataset.db.engine import make_engine
from qwen_dataset.db.models import ROLES, Role
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import storage_options_from_env
from qwen_dataset.workbench.admin_settings import load_settings
from qwen_dataset.workbench.assignment import ImportProblem, import_batch
from qwen_dataset.workbench.config import ConfigError, WorkbenchSettings, default_database_url


def _database_url() -> str:
    return os.environ.get("QWEN_DATABASE_URL") or default_database_url(os.environ.get("QWEN_STORAGE_ROOT"))


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from qwen_dataset.workbench.app import create_app

    settings = WorkbenchSettings.from_env()
    if args.workers is not None:
        settings = dataclasses.replace(settings, workers=args.workers)
    if not settings.editor_dir.joinpath("js", "main.js").is_file():
        print(
            f"warning: the Label Studio editor build is missing ({settings.editor_dir}); "
            "run `npm ci --ignore-scripts` in the repository root",
            file=sys.stderr,
        )
    check_connection_budget(settings)
    options = {"host": args.host, "port": args.port, "proxy_headers": True, "log_level": "info"}
    options["access_log"] = settings.access_log
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **options)
    else:
        # Each worker process imports the app by name and reads the same environment.
        uvicorn.run(
            "qwen_dataset.workbench.app:app_from_environment", factory=True, workers=settings.workers, **options
        )
    return 0


def check_connection_budget(settings: WorkbenchSettings) -> None:
    """:class:`ConfigError` when the server's pools could ask PostgreSQL for more connections than
    it accepts: under a burst, the requests past its limit would fail instead of waiting."""
    if not settings.database_url.startswith("postgresql"):
        return
    engine = make_engine(settings.database_url, migrate=False)
    try:
        with engine.connect() as connection:
            limit = int(connection.exec_driver_sql("SHOW max_connections").scalar_one())
            reserved = int(connection.exec_driver_sql("SHOW superuser_reserved_connections").scalar_one())
    finally:
        engine.dispose()
    if settings.database_connections > limit - reserved:
        raise ConfigError(
            f"{settings.workers} server process(es) x 2 x {settings.threads} threads may hold "
            f"{settings.database_connections} database connections, but PostgreSQL accepts {limit - reserved} "
            f"(max_connections {limit} - {reserved} reserved): lower QWEN_WORKBENCH_WORKERS or "
            "QWEN_WORKBENCH_THREADS, or raise max_connections"
        )


def create_user_command(args: argparse.Namespace) -> int:
    from qwen_dataset.workbench.api import create_user

    password = os.environ.get("QWEN_WORKBENCH_PASSWORD") or getpass.getpass(f"password for {args.username}: ")
    with Session(make_engine(_database_url())) as session:
        try:
            create_user(session, args.username, password, args.role)
        except HTTPException as error:
            print(f"error: {error.detail}", file=sys.stderr)
            return 1
        session.commit()
    print(f"created {args.role} {args.username}")
    return 0


def create_token_command(args: argparse.Namespace) -> int:
    from qwen_dataset.workbench.api import create_token

    with Session(make_engine(_database_url())) as session:
        secret = create_token(session, args.name, None)
        session.commit()
    print(secret)
    return 0


def import_batch_command(args: argparse.Namespace) -> int:
    layout = StorageLayout(
        os.environ.get("QWEN_STORAGE_ROOT") or ".storage", storage_options=storage_options_from_env()
    )
    with Session(make_engine(_database_url())) as session:
        try:
            summary = import_batch(session, layout, args.batch, load_settings(session), "cli")
        except ImportProblem as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        session.commit()
    print(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qwen_dataset.workbench", description="The review workbench.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the web app (settings from the environment)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8080)
    run.add_argument("--workers", type=int, help="server processes (default: QWEN_WORKBENCH_WORKERS, else 1)")
    run.set_defaults(handler=serve)
    user = commands.add_parser("create-user", help="create an account (the first admin, typically)")
    user.add_argument("username")
    user.add_argument("--role", choices=ROLES, default=Role.ANNOTATOR)
    user.set_defaults(handler=create_user_command)
    token = commands.add_parser("create-token", help="create an API token and print it once")
    token.add_argument("name")
    token.set_defaults(handler=create_token_command)
    batch = commands.add_parser("import-batch", help="import a pre-annotated batch into the workbench")
    batch.add_argument("batch")
    batch.set_defaults(handler=import_batch_command)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
