"""Content-addressed blobs under ``<root>/blobs``: uploads and rendered frames, stored once by sha256."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

from qwen_dataset.store.paths import (
    CHUNK,
    StoragePath,
    _local_atomic_writer,
    atomic_write_bytes,
    atomic_writer,
    default_cache_dir,
    is_remote,
    sha256_file,
    storage_root,
)

_HEX_DIGITS = frozenset("0123456789abcdef")


class BlobStore:
    """Content-addressed blobs under ``<root>/blobs``; a blob's uri is its path relative to root.

    On a remote root, blobs written here are also kept in the local ``cache`` (they are usually read
    again soon, e.g. a rendered frame by OCR) and blobs read here are downloaded into it once.
    """

    def __init__(self, root: StoragePath | str, cache: Path | None = None) -> None:
        self.root = storage_root(root)
        self.remote = is_remote(self.root)
        self.cache = (Path(cache) if cache is not None else default_cache_dir()) if self.remote else None

    def _cached(self, uri: str) -> Path | None:
        """The blob's copy in the local cache; None on a local root, which has no cache."""
        return self.cache / uri if self.cache is not None else None

    @staticmethod
    def uri_for(sha256: str) -> str:
        return f"blobs/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    @staticmethod
    def sha256_of(uri: str) -> str:
        """The content id a blob uri names, or a ValueError for anything that is not a blob uri."""
        sha256 = uri.rsplit("/", 1)[-1]
        if len(sha256) != 64 or not _HEX_DIGITS.issuperset(sha256) or BlobStore.uri_for(sha256) != uri:
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
        if not is_remote(self.root):
            return self.root / uri
        cached = self._cached(uri)
        assert cached is not None, "a remote root always has a cache"
        if not cached.exists():
            self._download(uri, cached)
        return cached

    def regular_file(self, uri: str) -> Path:
        """:meth:`local_path`, only when it is a regular file inside the store (its cache on a
        remote root): what a web server may hand out. Anything else - a symlink planted in the
        store, a folder, a path whose real location lies outside - is a FileNotFoundError."""
        path = self.local_path(uri)
        base = self.cache if self.cache is not None else Path(str(self.root))
        real, home = Path(os.path.realpath(path)), Path(os.path.realpath(base))
        try:
            regular = stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            regular = False
        if not regular or not real.is_relative_to(home):
            raise FileNotFoundError(f"blob {uri} is not a regular file inside {base}")
        return path

    def _download(self, uri: str, cached: Path) -> None:
        sha256 = uri.rsplit("/", 1)[-1]
        remote = self.stored(uri)
        if not remote.exists():
            raise FileNotFoundError(f"blob {uri} is missing from the storage root {self.root}")
        digest = hashlib.sha256()
        with remote.open("rb") as reader, _local_atomic_writer(cached) as writer:
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
        cached = self._cached(uri)
        if cached is not None and not cached.exists():
            atomic_write_bytes(cached, data)
        return sha256, uri

    def put_file(self, source: Path, sha256: str | None = None) -> tuple[str, str]:
        """Stream a file into the store without holding it in memory."""
        sha256 = sha256 or sha256_file(source)
        uri = self.uri_for(sha256)
        targets = [self.stored(uri)] if not self.exists(sha256) else []
        cached = self._cached(uri)
        if cached is not None and not cached.exists():
            targets.append(cached)
        for target in targets:
            with Path(source).open("rb") as reader, atomic_writer(target) as writer:
                shutil.copyfileobj(reader, writer, CHUNK)
        return sha256, uri

    def read_bytes(self, uri: str) -> bytes:
        return self.local_path(uri).read_bytes()
