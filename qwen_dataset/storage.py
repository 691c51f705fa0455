"""The storage root: inbox, content-addressed blobs, manifests and exports.

Layout under the root::

    inbox/<batch>/...            files as they arrived (upload API or a copied folder)
    blobs/sha256/ab/cd/<sha256>  content-addressed blobs (uploads, rendered frames)
    manifests/<asset>/<batch>.parquet
    exports/<batch>/...          datasets and reports

Every write is atomic (temp file in the same directory, fsync, rename): a crash never leaves a half
file that looks whole, and a blob that exists is complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
FILE_MODE = 0o644
# exports/reports/ holds every batch's quality report, so no batch may be called that.
RESERVED_BATCH_NAMES = {"reports"}


def checked_batch(batch: str) -> str:
    """A batch name that is safe as a folder name under the root, or a ValueError saying why not."""
    from qwen_dataset.inbox import BATCH_NAME

    if not BATCH_NAME.match(batch) or batch in RESERVED_BATCH_NAMES or batch in {".", ".."}:
        raise ValueError(
            f"{batch!r} is not a valid batch name: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit, and not {sorted(RESERVED_BATCH_NAMES)}"
        )
    return batch


@contextmanager
def atomic_writer(path: Path, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temp file beside ``path``; it replaces ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes owner-only files; datasets and blobs are meant to be read by the team.
    os.fchmod(fd, FILE_MODE)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_writer(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore:
    """Content-addressed blobs under ``<root>/blobs``; a blob's uri is its path relative to root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @staticmethod
    def uri_for(sha256: str) -> str:
        return f"blobs/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def path(self, uri: str) -> Path:
        return self.root / uri

    def exists(self, sha256: str) -> bool:
        return self.path(self.uri_for(sha256)).exists()

    def put_bytes(self, data: bytes) -> tuple[str, str]:
        """Store ``data``; returns ``(sha256, uri)``. Storing the same content twice is a no-op."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(self.uri_for(sha256))
        if not target.exists():
            atomic_write_bytes(target, data)
        return sha256, self.uri_for(sha256)

    def put_file(self, source: Path, sha256: str | None = None) -> tuple[str, str]:
        """Stream a file into the store without holding it in memory."""
        sha256 = sha256 or sha256_file(source)
        target = self.path(self.uri_for(sha256))
        if not target.exists():
            with source.open("rb") as reader, atomic_writer(target) as writer:
                shutil.copyfileobj(reader, writer, CHUNK)
        return sha256, self.uri_for(sha256)

    def read_bytes(self, uri: str) -> bytes:
        return self.path(uri).read_bytes()


class StorageLayout:
    """Named places under one storage root."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        self.blobs = BlobStore(self.root)

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    def batch_inbox(self, batch: str) -> Path:
        return self.inbox / checked_batch(batch)

    def manifest(self, asset: str, partition: str | None) -> Path:
        name = checked_batch(partition) if partition else "__all__"
        return self.root / "manifests" / asset / f"{name}.parquet"

    def exports(self, batch: str) -> Path:
        return self.root / "exports" / checked_batch(batch)

    def ensure(self) -> None:
        for path in (self.inbox, self.root / "blobs", self.root / "manifests", self.root / "exports"):
            path.mkdir(parents=True, exist_ok=True)
