"""Which inbox folders are complete batches, ready for the pipeline.

A folder ``inbox/<batch>/`` is ready when it holds a ``_READY`` marker (the upload API writes it
last) or when nothing in it changed for ``settle_seconds`` (files copied in by hand).
"""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import datetime
from pathlib import Path

from upath import UPath

from qwen_dataset.store.paths import StoragePath

READY_MARKER = "_READY"
# Written first by an upload to object storage (which has no atomic folder rename), deleted last.
UPLOADING_MARKER = "_UPLOADING"
BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# exports/reports/ holds every batch's quality report, so no batch may be called that.
RESERVED_BATCH_NAMES = {"reports"}


def checked_batch(batch: str) -> str:
    """A batch name that is safe as a folder name under the root, or a ValueError saying why not."""
    if not BATCH_NAME.match(batch) or batch in RESERVED_BATCH_NAMES or batch in {".", ".."}:
        raise ValueError(
            f"{batch!r} is not a valid batch name: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit, and not {sorted(RESERVED_BATCH_NAMES)}"
        )
    return batch


@dataclasses.dataclass(frozen=True)
class InboxScan:
    ready: list[str]
    waiting: list[str]  # still being written
    invalid: list[str]  # folder names that cannot be a batch id


def _listing_time(info: dict) -> float:
    """Seconds since the epoch from an fsspec listing entry (stores name the field differently)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)) and value:
            return float(value)
    return 0.0


def modified_time(path: StoragePath) -> float:
    """Seconds since the epoch a file last changed, on disk or in an object store."""
    if isinstance(path, Path):
        return path.stat().st_mtime
    return _listing_time(path.fs.info(path.path))


def _local_files(folder: Path) -> list[tuple[str, float]]:
    """The folder's files (path inside it, modification time); files that vanish meanwhile are skipped."""
    files = []
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                files.append((path.relative_to(folder).as_posix(), path.stat().st_mtime))
        except FileNotFoundError:
            continue
    return files


def _local_folders(inbox: Path) -> dict[str, list[tuple[str, float]]]:
    """Each folder of a local inbox with its files, as :func:`_remote_folders` lists a remote one.

    A folder whose name cannot be a batch is not walked: it is only reported as invalid.
    """
    return {p.name: _local_files(p) if _is_batch_name(p.name) else [] for p in inbox.iterdir() if p.is_dir()}


def _remote_folders(inbox: UPath) -> dict[str, list[tuple[str, float]]]:
    # One recursive listing per scan (paginated by the store), not one request per folder and file.
    base = inbox.path.rstrip("/")
    folders: dict[str, list[tuple[str, float]]] = {}
    for name, info in inbox.fs.find(base, detail=True).items():
        folder, _, inside = name[len(base) + 1 :].partition("/")
        if inside:
            folders.setdefault(folder, []).append((inside, _listing_time(info)))
    return folders


def _is_batch_name(name: str) -> bool:
    return bool(BATCH_NAME.match(name)) and name != "reports"


def scan_inbox(inbox: StoragePath, settle_seconds: float = 60.0, now: float | None = None) -> InboxScan:
    """Classify every folder of the inbox; batch names are sorted for deterministic runs.

    On object storage a folder exists once it holds a file, and times come from the listing
    (S3's ``LastModified``); the upload API marks a folder it is still filling with ``_UPLOADING``,
    and writing ``_READY`` last is the reliable signal for other tools.
    """
    now = time.time() if now is None else now
    if not inbox.is_dir():
        return InboxScan([], [], [])
    listing = _local_folders(inbox) if isinstance(inbox, Path) else _remote_folders(inbox)
    names = sorted(listing)
    ready, waiting = [], []
    invalid = [name for name in names if not _is_batch_name(name)]
    for name in (n for n in names if _is_batch_name(n)):
        files = listing[name]
        inside = {path for path, _ in files}
        newest = max((mtime for _, mtime in files), default=None)
        if READY_MARKER in inside:
            ready.append(name)
        elif UPLOADING_MARKER not in inside and newest is not None and now - newest >= settle_seconds:
            ready.append(name)
        else:
            waiting.append(name)
    return InboxScan(ready, waiting, invalid)


def mark_ready(folder: StoragePath) -> None:
    (folder / READY_MARKER).touch()
