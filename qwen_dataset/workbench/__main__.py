"""Command line of the workbench.

``python -m qwen_dataset.workbench serve [--host 127.0.0.1] [--port 8080] [--workers N]``
``python -m qwen_dataset.workbench create-user NAME --role admin`` (password from
``QWEN_WORKBENCH_PASSWORD`` or asked for)
``python -m qwen_dataset.workbench create-token NAME`` (prints the token once)
``python -m qwen_dataset.workbench import-batch BATCH``
``python -m qwen_dataset.workbench waive BATCH FIGURE --admin NAME --reason TEXT`` (the admin's
password from ``QWEN_WORKBENCH_PASSWORD`` or asked for), ``revoke-waiver BATCH FIGURE --admin NAME``,
``waivers [BATCH]``
``python -m qwen_dataset.workbench double-blind BATCH --annotator NAME [--annotator NAME] --items N``
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import sys

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from qwen_dataset.db.engine import make_engine
from qwen_dataset.db.models import ROLES, Role, User
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


def new_password(username: str) -> str | None:
    """``QWEN_WORKBENCH_PASSWORD``, or the password typed twice (None when the two differ)."""
    password = os.environ.get("QWEN_WORKBENCH_PASSWORD")
    if password:
        return password
    password = getpass.getpass(f"password for {username}: ")
    if getpass.getpass(f"password for {username} again: ") != password:
        print("error: the two passwords differ; nothing was created, run create-user again", file=sys.stderr)
        return None
    return password


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

    password = new_password(args.username)
    if password is None:
        return 1
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


def _layout() -> StorageLayout:
    return StorageLayout(os.environ.get("QWEN_STORAGE_ROOT") or ".storage", storage_options=storage_options_from_env())


def import_batch_command(args: argparse.Namespace) -> int:
    layout = _layout()
    with Session(make_engine(_database_url())) as session:
        try:
            summary = import_batch(session, layout, args.batch, load_settings(session), "cli")
        except ImportProblem as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        session.commit()
    print(summary)
    return 0


def _signed_in_admin(session: Session, name: str) -> User | None:
    """The admin ``name`` once their password is checked (``QWEN_WORKBENCH_PASSWORD`` or asked for)."""
    from qwen_dataset.workbench.security import verify_password

    user = session.scalars(select(User).where(User.username == name)).first()
    password = os.environ.get("QWEN_WORKBENCH_PASSWORD") or getpass.getpass(f"password of admin {name}: ")
    if user is None or not verify_password(user.password_hash, password):
        print(f"error: wrong user name or password for {name!r}", file=sys.stderr)
        return None
    return user


def _reported(layout: StorageLayout, batch: str) -> dict | None:
    path = layout.reports / f"{batch}.json"
    return json.loads(path.read_text()) if path.exists() else None


def waive_command(args: argparse.Namespace) -> int:
    from qwen_dataset.db.waivers import WaiverRefused, record_waiver

    report = _reported(_layout(), args.batch)
    status = (report or {}).get("statuses", {}).get(args.figure)
    if report is not None and status not in (None, "fail"):
        print(
            f"error: {args.figure} of batch {args.batch} is {status!r} in its latest quality report, not failing: "
            "there is nothing to waive",
            file=sys.stderr,
        )
        return 1
    with Session(make_engine(_database_url())) as session:
        admin = _signed_in_admin(session, args.admin)
        if admin is None:
            return 1
        try:
            waiver = record_waiver(
                session,
                admin,
                args.batch,
                args.figure,
                args.reason,
                value=(report or {}).get("headline", {}).get(args.figure),
                target=(report or {}).get("targets", {}).get(args.figure),
            )
        except WaiverRefused as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        session.commit()
    print(
        f"waived {waiver.figure} of batch {waiver.batch} (value {waiver.value}, target {waiver.target}) by "
        f"{waiver.waived_by} at {waiver.waived_at}: {waiver.reason}\n"
        "The corrections sensor reruns qc_report and exports of the batch; or materialize them in the Dagster UI."
    )
    return 0


def revoke_waiver_command(args: argparse.Namespace) -> int:
    from qwen_dataset.db.waivers import WaiverRefused, revoke_waivers

    with Session(make_engine(_database_url())) as session:
        admin = _signed_in_admin(session, args.admin)
        if admin is None:
            return 1
        try:
            count = revoke_waivers(session, admin, args.batch, args.figure)
        except WaiverRefused as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        session.commit()
    print(f"revoked {count} waiver(s) of {args.figure} for batch {args.batch}")
    return 0


def list_waivers_command(args: argparse.Namespace) -> int:
    from qwen_dataset.db.waivers import active_waivers

    waivers = active_waivers(make_engine(_database_url()), args.batch)
    for waiver in waivers:
        print(
            f"{waiver.batch}\t{waiver.figure}\t{waiver.value}\t> {waiver.target}\t"
            f"{waiver.waived_by}\t{waiver.waived_at}\t{waiver.reason}"
        )
    if not waivers:
        print("no active waiver")
    return 0


def double_blind_command(args: argparse.Namespace) -> int:
    from qwen_dataset.workbench.resample import sample_double_blind

    with Session(make_engine(_database_url())) as session:
        try:
            summary = sample_double_blind(session, args.batch, args.annotator, args.items)
        except ImportProblem as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        session.commit()
    print(
        f"batch {summary.batch}: made double-blind {summary.per_annotator}; new blind assignments for "
        f"{summary.second_annotators} (they appear in those annotators' queues)"
    )
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
    from qwen_dataset.quality.report import GATED

    waive = commands.add_parser("waive", help="record an admin's waiver of a failed quality figure for a batch")
    waive.add_argument("batch")
    waive.add_argument("figure", choices=GATED)
    waive.add_argument("--admin", required=True, help="the admin's user name (their password is checked)")
    waive.add_argument("--reason", required=True, help="why the batch may ship anyway (printed in the dataset card)")
    waive.set_defaults(handler=waive_command)
    revoke = commands.add_parser("revoke-waiver", help="revoke the waivers of a figure for a batch")
    revoke.add_argument("batch")
    revoke.add_argument("figure", choices=GATED)
    revoke.add_argument("--admin", required=True)
    revoke.set_defaults(handler=revoke_waiver_command)
    listed = commands.add_parser("waivers", help="list the active waivers (of one batch)")
    listed.add_argument("batch", nargs="?")
    listed.set_defaults(handler=list_waivers_command)
    double = commands.add_parser("double-blind", help="make more of some annotators' items double-blind")
    double.add_argument("batch")
    double.add_argument("--annotator", action="append", required=True, help="repeat for each annotator concerned")
    double.add_argument("--items", type=int, default=5, help="items per annotator (default 5)")
    double.set_defaults(handler=double_blind_command)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
