"""The storage root: inbox, content-addressed blobs, manifests and exports.

Layout under the root::

    inbox/<batch>/...            files as they arrived (upload API or a copied folder)
    blobs/sha256/ab/cd/<sha256>  content-addressed blobs (uploads, rendered frames)
    manifests/<asset>/<batch>.parquet
    exports/<batch>/...          datasets; exports/reports/ the quality reports
    releases/<version>/...       immutable releases

The root is a local folder or an fsspec URL (``s3://bucket/prefix``, ``gs://…``, ``memory://…``),
held as a :class:`upath.UPath`. A local root is a plain :class:`pathlib.Path` and everything works
on it in place. On an object store the data lives in the store and the work happens on local
files: decoders get a blob from a content-addressed local cache (:meth:`BlobStore.local_path`),
a folder to read is copied down (:meth:`StorageLayout.local_copy`), and a folder to write is
staged locally and uploaded when it is complete (:meth:`StorageLayout.publishing`).

Every write is atomic: on a local root a temp file in the same directory is fsynced and renamed;
on an object store the object is uploaded in one PUT (a multipart upload appears only when it
completes). A crash never leaves a half file that looks whole, and a blob that exists is complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
from upath import UPath

CHUNK = 1 << 20
FILE_MODE = 0o644
# exports/reports/ holds every batch's quality report, so no batch may be called that.
RESERVED_BATCH_NAMES = {"reports"}
LOCAL_PROTOCOLS = {"", "file", "local"}
CACHE_ENV = "QWEN_STORAGE_CACHE"
OPTIONS_ENV = "QWEN_STORAGE_OPTIONS"

StoragePath = Path | UPath


def checked_batch(batch: str) -> str:
    """A batch name that is safe as a folder name under the root, or a ValueError saying why not."""
    from qwen_dataset.inbox import BATCH_NAME

    if not BATCH_NAME.match(batch) or batch in RESERVED_BATCH_NAMES or batch in {".", ".."}:
        raise ValueError(
            f"{batch!r} is not a valid batch name: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit, and not {sorted(RESERVED_BATCH_NAMES)}"
        )
    return batch


def is_remote(path: StoragePath) -> bool:
    """True for a path on an fsspec file system other than the local disk."""
    return not isinstance(path, Path)


def storage_root(root: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> StoragePath:
    """The root as a resolved local :class:`Path`, or a :class:`UPath` for an fsspec URL.

    ``storage_options`` go to the file system (e.g. ``{"endpoint_url": ..., "key": ..., "secret": ...}``
    for an S3-compatible store); credentials can equally come from the store's usual environment.
    """
    if isinstance(root, UPath) and is_remote(root):
        return root
    text = os.fspath(root)
    if is_url_root(text):
        return UPath(text, **dict(storage_options or {}))
    return Path(text.split("://", 1)[-1]).expanduser().resolve()


def is_url_root(root: str | os.PathLike[str]) -> bool:
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
        raise ValueError(f"{OPTIONS_ENV} is not valid JSON ({error}); set it to an object such as "
                         '{"endpoint_url": "http://minio:9000"}') from None
    if not isinstance(options, dict):
        raise ValueError(f"{OPTIONS_ENV} must be a JSON object such as {{\"endpoint_url\": \"http://minio:9000\"}}")
    return options


def default_cache_dir() -> Path:
    """Where blobs of a remote root are cached: ``$QWEN_STORAGE_CACHE`` or ``~/.cache/qwen-dataset``.

    The cache is content-addressed, so one cache serves every root and never goes stale; deleting
    it only costs downloads.
    """
    configured = os.environ.get(CACHE_ENV)
    base = Path(configured) if configured else Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "qwen-dataset"
    return base.expanduser().resolve()


@contextmanager
def _local_atomic_writer(path: Path, mode: str) -> Iterator[BinaryIO]:
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


@contextmanager
def _remote_atomic_writer(path: UPath, mode: str) -> Iterator[BinaryIO]:
    # Written locally first: the object is uploaded in one go only if the block succeeds, so a
    # failure leaves the old object (or none), never a truncated one.
    with tempfile.NamedTemporaryFile(mode, suffix=".upload") as handle:
        yield handle
        handle.flush()
        path.fs.put_file(handle.name, path.path)


@contextmanager
def atomic_writer(path: StoragePath, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temp file for ``path``; it replaces ``path`` only if the block succeeds."""
    if is_remote(path):
        with _remote_atomic_writer(path, mode) as handle:
            yield handle
    else:
        with _local_atomic_writer(Path(path), mode) as handle:
            yield handle


def atomic_write_bytes(path: StoragePath, data: bytes) -> None:
    with atomic_writer(path, "wb") as handle:
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


class BlobStore:
    """Content-addressed blobs under ``<root>/blobs``; a blob's uri is its path relative to root.

    On a remote root, blobs written here are also kept in the local ``cache`` (they are usually read
    again soon, e.g. a rendered frame by OCR) and blobs read here are downloaded into it once.
    """

    def __init__(self, root: StoragePath | str, cache: Path | None = None) -> None:
        self.root = storage_root(root)
        self.remote = is_remote(self.root)
        self.cache = (Path(cache) if cache is not None else default_cache_dir()) if self.remote else None

    @staticmethod
    def uri_for(sha256: str) -> str:
        return f"blobs/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    @staticmethod
    def sha256_of(uri: str) -> str:
        """The content id a blob uri names, or a ValueError for anything that is not a blob uri."""
        sha256 = uri.rsplit("/", 1)[-1]
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256) or BlobStore.uri_for(sha256) != uri:
            raise ValueError(f"{uri!r} is not a blob uri (blobs/sha256/ab/cd/<64 hex digits>)")
        return sha256

    def stored(self, uri: str) -> StoragePath:
        """Where the blob lives under the root (on a remote root: in the object store)."""
        return self.root / uri

    def local_path(self, uri: str) -> Path:
        """A local file with the blob's bytes, for decoders that need a path (PyAV, pdfium, OpenCV).

        On a local root this is the blob itself; on a remote root, its cached copy (downloaded
        once and checked against its sha256).
        """
        self.sha256_of(uri)  # a stored uri must never reach a file outside the store or the cache
        if not self.remote:
            return Path(self.root) / uri
        cached = self.cache / uri
        if not cached.exists():
            self._download(uri, cached)
        return cached

    def _download(self, uri: str, cached: Path) -> None:
        sha256 = uri.rsplit("/", 1)[-1]
        remote = self.stored(uri)
        if not remote.exists():
            raise FileNotFoundError(f"blob {uri} is missing from the storage root {self.root}")
        digest = hashlib.sha256()
        with remote.open("rb") as reader, _local_atomic_writer(cached, "wb") as writer:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                writer.write(chunk)
            if digest.hexdigest() != sha256:
                raise OSError(f"blob {uri} in {self.root} does not hash to its name: the stored object is damaged")

    def exists(self, sha256: str) -> bool:
        return self.stored(self.uri_for(sha256)).exists()

    def put_bytes(self, data: bytes) -> tuple[str, str]:
        """Store ``data``; returns ``(sha256, uri)``. Storing the same content twice is a no-op."""
        sha256 = hashlib.sha256(data).hexdigest()
        uri = self.uri_for(sha256)
        if not self.exists(sha256):
            atomic_write_bytes(self.stored(uri), data)
        if self.remote and not (self.cache / uri).exists():
            atomic_write_bytes(self.cache / uri, data)
        return sha256, uri

    def put_file(self, source: Path, sha256: str | None = None) -> tuple[str, str]:
        """Stream a file into the store without holding it in memory."""
        sha256 = sha256 or sha256_file(source)
        uri = self.uri_for(sha256)
        targets = [self.stored(uri)] if not self.exists(sha256) else []
        if self.remote and not (self.cache / uri).exists():
            targets.append(self.cache / uri)
        for target in targets:
            with Path(source).open("rb") as reader, atomic_writer(target) as writer:
                shutil.copyfileobj(reader, writer, CHUNK)
        return sha256, uri

    def read_bytes(self, uri: str) -> bytes:
        return self.local_path(uri).read_bytes()


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
    """Every file under a local folder, as sorted paths relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _remote_files(folder: UPath) -> set[str]:
    """Paths of the objects under ``folder``, relative to it; "folder" placeholder keys are left out."""
    if not folder.exists():
        return set()
    base = folder.path.rstrip("/")
    names = (name[len(base) + 1:] for name in folder.fs.find(base))
    # The S3 console's "Create folder" writes an empty key ending in "/": no file to copy.
    return {name for name in names if name and not name.endswith("/")}


class StorageLayout:
    """Named places under one storage root (a local folder or an fsspec URL)."""

    def __init__(self, root: StoragePath | str, storage_options: Mapping[str, Any] | None = None,
                 cache: Path | str | None = None) -> None:
        self.root = storage_root(root, storage_options)
        self.remote = is_remote(self.root)
        # Only a URL root needs a cache; a folder root never touches one (nor needs a HOME).
        if cache is not None:
            self.cache: Path | None = Path(cache).expanduser().resolve()
        else:
            self.cache = default_cache_dir() if self.remote else None
        if self.remote:
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
        if self.remote:
            self._check_reachable()
            return
        for path in (self.inbox, self.root / "blobs", self.root / "manifests", self.root / "exports"):
            path.mkdir(parents=True, exist_ok=True)

    def _check_reachable(self) -> None:
        # The bucket must exist already: creating one here would turn a typo into a new bucket.
        fs, path = self.root.fs, self.root.path
        bucket = path.strip("/").split("/", 1)[0]
        try:
            if self.root.protocol == "memory":
                fs.makedirs(path, exist_ok=True)
                return
            fs.info(bucket)
            found = True
        except FileNotFoundError:
            found = False
        except Exception as error:
            raise OSError(
                f"The storage root {self.root} cannot be reached ({type(error).__name__}: {error}). Check the URL, "
                "the credentials (e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the endpoint "
                "(QWEN_STORAGE_OPTIONS, e.g. {\"endpoint_url\": \"http://minio:9000\"})."
            ) from error
        if not found:
            raise OSError(
                f"The bucket {bucket!r} of the storage root {self.root} does not exist, or these credentials cannot "
                "see it: create the bucket (it is never created automatically) or fix QWEN_STORAGE_ROOT."
            )

    @contextmanager
    def local_copy(self, folder: StoragePath) -> Iterator[Path]:
        """A local folder with ``folder``'s files, for code that walks a folder on disk.

        A local folder is given as it is; a remote one is downloaded into a temporary folder that
        is deleted afterwards.
        """
        if not is_remote(folder):
            yield Path(folder)
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

        A local folder is written in place (each writer is atomic). A remote one is staged in a
        temporary folder and uploaded file by file: the names in ``last`` (a ``_READY`` marker, an
        export's ``manifest.json``) are deleted from the store first and uploaded after all others,
        so a reader that waits for them never sees a partial folder, a re-upload included.
        ``mirror`` deletes remote files the staging folder does not have (a task or frame an earlier
        export had). Nothing is uploaded when the block fails.
        """
        if not is_remote(folder):
            Path(folder).mkdir(parents=True, exist_ok=True)
            yield Path(folder)
            return
        with tempfile.TemporaryDirectory(prefix="qwen-publish-") as tmp:
            staging = Path(tmp)
            yield staging
            upload_folder(staging, folder, mirror=mirror, last=last)


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
