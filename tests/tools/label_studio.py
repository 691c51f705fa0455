"""A real Label Studio server for the tests, offline, from its own venv (``.tools/label-studio-venv``).

The first use migrates a template data folder once (``label-studio init``, ~25 s) and keeps it in
``.tools/label-studio-template``; each server starts from a copy of it in a few seconds. The
settings are the ones the README names for serving an export's media: local-files serving on, a
document root, and the legacy API token so the tests need no browser login. Nothing leaves the
machine: the version check and error reporting are off, and the server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.tools import TOOLS_DIR, ensure

USER = "admin@example.com"
PASSWORD = "admin-pass-123"
TOKEN = "test-token-0123456789abcdef"
TEMPLATE = TOOLS_DIR / "label-studio-template"


def server_env(data_dir: Path, document_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_", "HEARTEX_"))}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_USERNAME=USER,
        LABEL_STUDIO_PASSWORD=PASSWORD,
        LABEL_STUDIO_USER_TOKEN=TOKEN,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",  # "Authorization: Token ..." is refused otherwise (1.23)
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(document_root),
        COLLECT_ANALYTICS="false",
        LATEST_VERSION_CHECK="false",  # otherwise it asks the package index for the newest version
        SENTRY_DSN="",  # the settings ship a default error-reporting address
        FRONTEND_SENTRY_DSN="",
        LOG_LEVEL="WARNING",
        DJANGO_DB="sqlite",
    )
    return env


def template_dir() -> Path:
    """The migrated data folder (database, secret key, user, token), made once."""
    tool = ensure("label-studio")
    marker = TEMPLATE / ".qwen-ready"
    if marker.is_file():
        return TEMPLATE
    with open(TOOLS_DIR / "label-studio-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file():
            shutil.rmtree(TEMPLATE, ignore_errors=True)
            subprocess.run(
                [str(tool.venv / "bin" / "label-studio"), "init", "-q"],
                env=server_env(TEMPLATE, Path("/")),
                check=True,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=600,
            )
            marker.write_text("ok\n")
    return TEMPLATE


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LabelStudio(requests.Session):
    """An API client of the running server: ``ls.api("post", "/api/projects", json=...)``."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base
        self.headers["Authorization"] = f"Token {TOKEN}"

    def api(self, method: str, path: str, expect: int = 200, **kwargs) -> requests.Response:
        response = self.request(method, self.base + path, timeout=120, **kwargs)
        assert response.status_code == expect, f"{method.upper()} {path}: {response.status_code} {response.text[:500]}"
        return response


@contextlib.contextmanager
def label_studio_server(work: Path, document_root: Path) -> Iterator[LabelStudio]:
    """A server on a free loopback port, serving local files under ``document_root``; stopped afterwards."""
    tool = ensure("label-studio")
    data_dir = work / "ls-data"
    shutil.copytree(template_dir(), data_dir)
    port = _free_port()
    log_path = work / "label-studio.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(tool.venv / "bin" / "label-studio"), "start", "--no-browser"]
            + ["--internal-host", "127.0.0.1", "--port", str(port)],
            env=server_env(data_dir, document_root),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            client = LabelStudio(f"http://127.0.0.1:{port}")
            _wait_until_up(client, process, log_path)
            yield client
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_until_up(client: LabelStudio, process: subprocess.Popen, log_path: Path) -> None:
    # Label Studio moves to the next port silently when its port is taken: only this process's
    # answer on this port counts, and an exit fails at once.
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"label-studio exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(requests.ConnectionError):
            if client.get(client.base + "/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"label-studio did not answer /health within 180 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)
