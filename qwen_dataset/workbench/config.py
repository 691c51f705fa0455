"""Workbench settings, read from the environment (``make workbench`` passes them through).

=============================  ===========================================================
``QWEN_DATABASE_URL``          SQLAlchemy URL of the annotation database (default: the SQLite
                               file ``<storage root>/annotations.db``, as the Dagster code
                               location uses, i.e. ``sqlite:///.storage/annotations.db``)
``QWEN_STORAGE_ROOT``          storage root: inbox, blobs, manifests (default ``.storage``)
``QWEN_WORKBENCH_SECRET``      key that signs session cookies (required outside tests: at
                               least 32 characters; ``python -c "import secrets;
                               print(secrets.token_urlsafe(48))"``)
``QWEN_WORKBENCH_SECURE_COOKIES``  ``1`` (default) marks cookies ``Secure`` (HTTPS only);
                               ``0`` for plain HTTP on localhost
``QWEN_WORKBENCH_MAX_FILE_MB``     largest uploaded file (default 512)
``QWEN_WORKBENCH_MAX_REQUEST_MB``  largest upload request (default 2048)
``QWEN_WORKBENCH_SESSION_HOURS``   session lifetime (default 12)
``QWEN_WORKBENCH_LOGIN_FAILURES``  failed sign-ins of one account before it is locked (default 5)
``QWEN_WORKBENCH_LOGIN_ADDRESS_FAILURES``  ... of one client address (default 50)
``QWEN_WORKBENCH_LOGIN_LOCK_MINUTES``  the window those count in, and the lock (default 15)
``QWEN_WORKBENCH_MAX_IMAGE_PIXELS``  largest uploaded image, width x height (default: the
                               ingest's ``max_image_pixels``, 100,000,000)
``QWEN_WORKBENCH_THREADS``     requests served at once per server process (default 16); the
                               others wait their turn, and the process's database pool holds as
                               many connections (twice as many at most: a few requests open a
                               second session)
``QWEN_WORKBENCH_WORKERS``     server processes (default 1; ``make workbench`` starts
                               ``WORKBENCH_WORKERS``, default 2): each has its own threads and
                               pool, so PostgreSQL needs workers x 2 x threads connections
``QWEN_WORKBENCH_ACCESS_LOG``  ``1`` logs every request (default ``0``: a proxy in front logs
                               them anyway, and a log line per save is CPU the saves need)
``QWEN_WORKBENCH_LS_IMAGE_PREFIX`` prefix of image URLs in Label Studio exports; the frame's
                               blob path follows it (default ``/data/local-files/?d=``)
``QWEN_WORKBENCH_EDITOR_DIR``  the Label Studio editor build (default
                               ``node_modules/@heartexlabs/label-studio/build/static``)
``QWEN_WORKBENCH_TIMELINE_DIR``  the wavesurfer.js build of the video-event editor (default
                               ``node_modules/wavesurfer.js/dist``)
=============================  ===========================================================
"""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from pathlib import Path

from qwen_dataset.db.engine import REPO_ROOT, sqlite_url
from qwen_dataset.ingest.uploads import IngestLimits
from qwen_dataset.store.paths import is_url_root, storage_options_from_env
from qwen_dataset.workbench.throttle import ThrottlePolicy

DEFAULT_DATABASE_URL = "sqlite:///.storage/annotations.db"
MIN_SECRET_LENGTH = 32
MB = 1024 * 1024
DEFAULT_LS_IMAGE_PREFIX = "/data/local-files/?d="
# Requests served at once. More cannot run faster on a few cores (each save is CPU work in Python);
# the limit keeps every request's database session inside the pool instead of queuing for it.
DEFAULT_THREADS = 16
# AnyIO runs FastAPI's synchronous handlers on 40 threads; more admitted requests than that would
# wait for a thread while holding a database connection.
MAX_THREADS = 40
MAX_WORKERS = 64
DEFAULT_EDITOR_DIR = REPO_ROOT / "node_modules" / "@heartexlabs" / "label-studio" / "build" / "static"
DEFAULT_TIMELINE_DIR = REPO_ROOT / "node_modules" / "wavesurfer.js" / "dist"


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable to set."""


@dataclasses.dataclass(frozen=True)
class WorkbenchSettings:
    database_url: str = DEFAULT_DATABASE_URL
    storage_root: Path | str = Path(".storage")  # a folder or an fsspec URL (s3://...)
    storage_options: dict = dataclasses.field(default_factory=dict)
    secret: str = ""
    secure_cookies: bool = True
    max_file_bytes: int = 512 * MB
    max_request_bytes: int = 2048 * MB
    session_seconds: int = 12 * 3600
    threads: int = DEFAULT_THREADS
    workers: int = 1
    access_log: bool = False
    login_account_failures: int = 5
    login_address_failures: int = 50
    login_lock_seconds: int = 15 * 60
    max_image_pixels: int = IngestLimits.max_image_pixels
    ls_image_prefix: str = DEFAULT_LS_IMAGE_PREFIX
    editor_dir: Path = DEFAULT_EDITOR_DIR
    timeline_dir: Path = DEFAULT_TIMELINE_DIR

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"QWEN_WORKBENCH_SECRET must be set to a random string of at least {MIN_SECRET_LENGTH} characters "
                '(it signs the session cookies), e.g. python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        if not 1 <= self.threads <= MAX_THREADS:
            raise ConfigError(f"QWEN_WORKBENCH_THREADS must be between 1 and {MAX_THREADS}, got {self.threads}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"QWEN_WORKBENCH_WORKERS must be between 1 and {MAX_WORKERS}, got {self.workers}")
        if min(self.login_account_failures, self.login_address_failures, self.login_lock_seconds) < 1:
            raise ConfigError(
                "QWEN_WORKBENCH_LOGIN_FAILURES, ..._LOGIN_ADDRESS_FAILURES and ..._LOGIN_LOCK_MINUTES must be positive"
            )
        if self.max_image_pixels < 1:
            raise ConfigError("QWEN_WORKBENCH_MAX_IMAGE_PIXELS must be positive")
        if self.max_file_bytes <= 0 or self.max_request_bytes <= 0:
            raise ConfigError("QWEN_WORKBENCH_MAX_FILE_MB and QWEN_WORKBENCH_MAX_REQUEST_MB must be positive")

    @property
    def database_connections(self) -> int:
        """The most connections the server's processes may hold at once: each pool keeps
        ``threads`` and opens as many again when every one is busy."""
        return self.workers * 2 * self.threads

    @property
    def throttle(self) -> ThrottlePolicy:
        window = timedelta(seconds=self.login_lock_seconds)
        return ThrottlePolicy(self.login_account_failures, self.login_address_failures, window)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> WorkbenchSettings:
        env = os.environ if environ is None else environ
        root_text = env.get("QWEN_STORAGE_ROOT") or ".storage"
        storage_root = root_text if is_url_root(root_text) else Path(root_text)
        try:
            storage_options = storage_options_from_env(env)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        return cls(
            database_url=env.get("QWEN_DATABASE_URL") or default_database_url(storage_root),
            storage_root=storage_root,
            storage_options=storage_options,
            secret=env.get("QWEN_WORKBENCH_SECRET", ""),
            secure_cookies=_flag(env, "QWEN_WORKBENCH_SECURE_COOKIES", True),
            max_file_bytes=int(_number(env, "QWEN_WORKBENCH_MAX_FILE_MB", 512) * MB),
            max_request_bytes=int(_number(env, "QWEN_WORKBENCH_MAX_REQUEST_MB", 2048) * MB),
            session_seconds=int(_number(env, "QWEN_WORKBENCH_SESSION_HOURS", 12) * 3600),
            threads=int(_number(env, "QWEN_WORKBENCH_THREADS", DEFAULT_THREADS)),
            workers=int(_number(env, "QWEN_WORKBENCH_WORKERS", 1)),
            access_log=_flag(env, "QWEN_WORKBENCH_ACCESS_LOG", False),
            login_account_failures=int(_number(env, "QWEN_WORKBENCH_LOGIN_FAILURES", 5)),
            login_address_failures=int(_number(env, "QWEN_WORKBENCH_LOGIN_ADDRESS_FAILURES", 50)),
            login_lock_seconds=int(_number(env, "QWEN_WORKBENCH_LOGIN_LOCK_MINUTES", 15) * 60),
            max_image_pixels=int(_number(env, "QWEN_WORKBENCH_MAX_IMAGE_PIXELS", IngestLimits.max_image_pixels)),
            ls_image_prefix=env.get("QWEN_WORKBENCH_LS_IMAGE_PREFIX", DEFAULT_LS_IMAGE_PREFIX),
            editor_dir=Path(env.get("QWEN_WORKBENCH_EDITOR_DIR") or DEFAULT_EDITOR_DIR),
            timeline_dir=Path(env.get("QWEN_WORKBENCH_TIMELINE_DIR") or DEFAULT_TIMELINE_DIR),
        )


def default_database_url(storage_root: Path | str | None = None) -> str:
    """The annotation database the pipeline uses when ``QWEN_DATABASE_URL`` is unset."""
    if storage_root is not None and is_url_root(storage_root):
        raise ConfigError(
            f"QWEN_STORAGE_ROOT={storage_root} is object storage, where SQLite cannot live: set "
            "QWEN_DATABASE_URL, e.g. postgresql://user:password@host:5432/qwen"
        )
    return sqlite_url(Path(storage_root or ".storage") / "annotations.db")


def _flag(env, name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r}: use 1 or 0")


def _number(env, name: str, default: float) -> float:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number") from None
