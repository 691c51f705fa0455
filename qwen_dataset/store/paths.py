"""Paths under the storage root and the writes every stage uses.

The root is a local folder or an fsspec URL (``s3://bucket/prefix``, ``gs://…``, ``memory://…``),
held as a :class:`upath.UPath`; a local root is a plain :class:`pathlib.Path`. Every write is
atomic: on a local root a temp file in the same directory is fsynced and renamed; on an object
store the object is uploaded in one PUT (a multipart upload appears only when it completes). A
crash never leaves a half file that looks whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pandas as pd
from typing_extensions import TypeIs
from upath import UPath

CHUNK = 1 << 20
FILE_MODE = 0o644

LOCAL_PROTOCOLS = {"", "file", "local"}
CACHE_ENV = "QWEN_STORAGE_CACHE"
OPTIONS_ENV = "QWEN_STORAGE_OPTIONS"
StoragePath = Path | UPath


def is_remote(path: StoragePath) -> TypeIs[UPath]:
    """True for a path on an fsspec file system other than the local disk.

    A local root is always a :class:`Path` (a local ``UPath`` is one too), so a path that is not
    one is a remote ``UPath``: the check narrows a :data:`StoragePath` both ways.
    """
    return not isinstance(path, Path)


def storage_root(
    root: StoragePath | str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> StoragePath:
    """The root as a resolved local :class:`Path`, or a :class:`UPath` for an fsspec URL.

    ``storage_options`` go to the file system (e.g. ``{"endpoint_url": ..., "key": ..., "secret": ...}``
    for an S3-compatible store); credentials can equally come from the store's usual environment.
    """
    if isinstance(root, UPath) and not isinstance(root, Path):  # a remote UPath keeps its own options
        return root
    text = os.fspath(root)
    if is_url_root(text):
        return UPath(text, **dict(storage_options or {}))
    return Path(text.split("://", 1)[-1]).expanduser().resolve()


def is_url_root(root: StoragePath | str | os.PathLike[str]) -> bool:
    """True when ``root`` names an fsspec store rather than a local folder."""
    text = os.fspath(root) if not isinstance(root, UPath) else str(root)
    return "://" in text and text.split("://", 1)[0] not in LOCAL_PROTOCOLS


def storage_options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``QWEN_STORAGE_OPTIONS`` (a JSON object) as file-system options; empty when unset."""
    text = (os.environ if environ is None else environ).get(OPTIONS_ENV, "").strip()
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{OPTIONS_ENV} is not valid JSON ({error}); set it to an object such as "
            '{"endpoint_url": "http://minio:9000"}'
        ) from None
    if not isinstance(options, dict):
        raise ValueError(f'{OPTIONS_ENV} must be a JSON object such as {{"endpoint_url": "http://minio:9000"}}')
    return options


def default_cache_dir() -> Path:
    """Where blobs of a remote root are cached: ``$QWEN_STORAGE_CACHE`` or ``~/.cache/qwen-dataset``.

    The cache is content-addressed, so one cache serves every root and never goes stale; deleting
    it only costs downloads.
    """
    configured = os.environ.get(CACHE_ENV)
    base = Path(configured) if configured else Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "qwen-dataset"
    return base.expanduser().resolve()


# Binary only: every writer streams bytes (parquet, JSON encoded first, blobs, video).
@contextmanager
def _local_atomic_writer(path: Path) -> Iterator[IO[bytes]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes owner-only files; datasets and blobs are meant to be read by the team.
    os.fchmod(fd, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


@contextmanager
def _remote_atomic_writer(path: UPath) -> Iterator[IO[bytes]]:
    # Written locally first: the object is uploaded in one go only if the block succeeds, so a
    # failure leaves the old object (or none), never a truncated one.
    with tempfile.NamedTemporaryFile("wb", suffix=".upload") as handle:
        yield handle
        handle.flush()
        path.fs.put_file(handle.name, path.path)


@contextmanager
def atomic_writer(path: StoragePath) -> Iterator[IO[bytes]]:
    """Open a binary temp file for ``path``; it replaces ``path`` only if the block succeeds."""
    if is_remote(path):
        with _remote_atomic_writer(path) as handle:
            yield handle
    else:
        with _local_atomic_writer(path) as handle:
            yield handle


def atomic_write_bytes(path: StoragePath, data: bytes) -> None:
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: StoragePath, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_parquet(path: StoragePath, table: pd.DataFrame) -> None:
    with atomic_writer(path) as handle:
        table.to_parquet(handle, index=False)


def read_parquet(path: StoragePath) -> pd.DataFrame:
    if not is_remote(path):
        return pd.read_parquet(path)
    return pd.read_parquet(io.BytesIO(path.read_bytes()))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
