"""The storage root's named places (inbox, blobs, manifests, exports, reports, releases), and moving
folders between a URL root and local files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from upath import UPath

from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.inbox import checked_batch
from qwen_dataset.store.paths import StoragePath, default_cache_dir, is_remote, storage_root


def _check_copyable(folder: UPath, names: Sequence[str]) -> None:
    """Refuse object keys that cannot be files inside one local folder (or would leave it)."""
    unsafe = [n for n in names if n.startswith("/") or any(part in ("", ".", "..") for part in n.split("/"))]
    if unsafe:
        raise ValueError(
            f"{folder} holds object keys that are no safe file path ({unsafe[:5]}: empty, '.' or '..' parts): "
            "rename or delete them in the store, then run again"
        )
    prefixes = {name.rsplit("/", 1)[0] for name in names if "/" in name}
    clashes = sorted(set(names) & {p for prefix in prefixes for p in _parents(prefix)})
    if clashes:
        raise ValueError(
            f"{folder} holds {clashes[:5]} both as objects and as folders of other objects, which no file system "
            "can hold: rename one of them in the store, then run again"
        )


def _parents(prefix: str) -> list[str]:
    parts = prefix.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def relative_files(folder: Path) -> list[str]:
    """Every file under a local folder, as sorted paths relative to it.

    One ``scandir`` per folder (no ``stat`` per file, unlike ``rglob`` + ``is_file``: a release
    lists its thousands of pictures three times); symlinked folders are not followed, as ``rglob``.
    """
    found: list[str] = []
    pending = [(str(folder), "")]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, f"{prefix}{entry.name}/"))
                elif entry.is_file():
                    found.append(f"{prefix}{entry.name}")
    return sorted(found)


def _remote_files(folder: UPath) -> set[str]:
    """Paths of the objects under ``folder``, relative to it; "folder" placeholder keys are left out."""
    if not folder.exists():
        return set()
    base = folder.path.rstrip("/")
    names = (name[len(base) + 1 :] for name in folder.fs.find(base))
    # The S3 console's "Create folder" writes an empty key ending in "/": no file to copy.
    return {name for name in names if name and not name.endswith("/")}


class StorageLayout:
    """Named places under one storage root (a local folder or an fsspec URL)."""

    def __init__(
        self, root: StoragePath | str, storage_options: Mapping[str, Any] | None = None, cache: Path | str | None = None
    ) -> None:
        self.root = storage_root(root, storage_options)
        self.remote = is_remote(self.root)
        # Only a URL root needs a cache; a folder root never touches one (nor needs a HOME).
        if cache is not None:
            self.cache: Path | None = Path(cache).expanduser().resolve()
        else:
            self.cache = default_cache_dir() if self.remote else None
        if is_remote(self.root):
            # Listings cached by a long-lived process (the sensor daemon) would hide new files.
            self.root.fs.invalidate_cache()
        self.blobs = BlobStore(self.root, cache=self.cache)

    @property
    def inbox(self) -> StoragePath:
        return self.root / "inbox"

    def batch_inbox(self, batch: str) -> StoragePath:
        return self.inbox / checked_batch(batch)

    def manifest(self, asset: str, partition: str | None) -> StoragePath:
        name = checked_batch(partition) if partition else "__all__"
        return self.root / "manifests" / asset / f"{name}.parquet"

    def exports(self, batch: str) -> StoragePath:
        return self.root / "exports" / checked_batch(batch)

    @property
    def reports(self) -> StoragePath:
        return self.root / "exports" / "reports"

    @property
    def releases(self) -> StoragePath:
        return self.root / "releases"

    def ensure(self) -> None:
        if is_remote(self.root):
            self._check_reachable(self.root)
            return
        for path in (self.inbox, self.root / "blobs", self.root / "manifests", self.root / "exports"):
            path.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _check_reachable(root: UPath) -> None:
        # The bucket must exist already: creating one here would turn a typo into a new bucket.
        fs, path = root.fs, root.path
        bucket = path.strip("/").split("/", 1)[0]
        try:
            if root.protocol == "memory":
                fs.makedirs(path, exist_ok=True)
                return
            fs.info(bucket)
            found = True
        except FileNotFoundError:
            found = False
        except Exception as error:
            raise OSError(
                f"The storage root {root} cannot be reached ({type(error).__name__}: {error}). Check the URL, "
                "the credentials (e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the endpoint "
                '(QWEN_STORAGE_OPTIONS, e.g. {"endpoint_url": "http://minio:9000"}).'
            ) from error
        if not found:
            raise OSError(
                f"The bucket {bucket!r} of the storage root {root} does not exist, or these credentials cannot "
                "see it: create the bucket (it is never created automatically) or fix QWEN_STORAGE_ROOT."
            )

    @contextmanager
    def local_copy(self, folder: StoragePath) -> Iterator[Path]:
        """A local folder with ``folder``'s files, for code that walks a folder on disk.

        A local folder is given as it is; a remote one is downloaded into a temporary folder that
        is deleted afterwards.
        """
        if not is_remote(folder):
            yield folder
            return
        with tempfile.TemporaryDirectory(prefix="qwen-copy-") as tmp:
            local = Path(tmp) / folder.name
            local.mkdir()
            names = sorted(_remote_files(folder))
            _check_copyable(folder, names)
            for name in names:
                target = local / name
                target.parent.mkdir(parents=True, exist_ok=True)
                folder.fs.get_file(f"{folder.path.rstrip('/')}/{name}", str(target))
            yield local

    @contextmanager
    def publishing(self, folder: StoragePath, *, mirror: bool = False, last: Sequence[str] = ()) -> Iterator[Path]:
        """A local folder to write ``folder``'s files into; they reach the root when the block succeeds.

        ``mirror``: ``folder`` becomes exactly what the block wrote, all or nothing. A local folder
        is then written into a sibling staging folder that replaces it only when the block
        succeeds (a failure leaves the previous folder untouched and removes the staging one);
        without ``mirror`` it is written in place (each writer is atomic). A remote one is staged in
        a temporary folder and uploaded file by file: the names in ``last`` (a ``_READY`` marker, an
        export's ``manifest.json``) are deleted from the store first and uploaded after all others,
        so a reader that waits for them never sees a partial folder, a re-upload included.
        ``mirror`` deletes remote files the staging folder does not have (a task or frame an earlier
        export had). Nothing is uploaded when the block fails.
        """
        if not is_remote(folder):
            if mirror:
                with replaced_folder(folder) as staging:
                    yield staging
                return
            folder.mkdir(parents=True, exist_ok=True)
            yield folder
            return
        with tempfile.TemporaryDirectory(prefix="qwen-publish-") as tmp:
            staging = Path(tmp)
            yield staging
            upload_folder(staging, folder, mirror=mirror, last=last)


def _siblings(folder: Path, kind: str) -> list[Path]:
    return sorted(folder.parent.glob(f".{glob_escape(folder.name)}.{kind}-*"))


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


@contextmanager
def replaced_folder(folder: Path) -> Iterator[Path]:
    """A fresh sibling folder that replaces ``folder`` when the block succeeds, and is deleted when it fails.

    The swap is two renames (the old folder aside, the new one in), then the old one is deleted. A
    crash between the renames leaves the old folder as ``.<name>.previous-*``; the next call puts
    it back before it starts, so a reader finds the previous or the new folder, never a mix.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    previous = _siblings(folder, "previous")
    if previous and not folder.exists():
        os.rename(previous[-1], folder)
    for leftover in _siblings(folder, "previous") + _siblings(folder, "staging"):
        shutil.rmtree(leftover, ignore_errors=True)
    token = uuid.uuid4().hex[:12]
    staging = folder.parent / f".{folder.name}.staging-{token}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    aside = folder.parent / f".{folder.name}.previous-{token}"
    if folder.exists():
        os.rename(folder, aside)
    os.rename(staging, folder)
    shutil.rmtree(aside, ignore_errors=True)


def upload_folder(local: Path, folder: UPath, *, mirror: bool = False, last: Sequence[str] = ()) -> list[str]:
    """Upload every file of ``local`` under the remote ``folder`` (``last`` ones at the end)."""
    names = relative_files(local)
    ordered = [n for n in names if n not in last] + [n for n in last if n in names]
    base = folder.path.rstrip("/")
    present = _remote_files(folder)
    stale = present - set(names) if mirror else set()
    for name in last:
        if name in present and name in names:
            folder.fs.rm_file(f"{base}/{name}")
    for name in ordered:
        folder.fs.put_file(str(local / name), f"{base}/{name}")
    for name in sorted(stale):
        folder.fs.rm_file(f"{base}/{name}")
    return ordered
