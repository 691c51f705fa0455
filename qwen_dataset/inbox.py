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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qwen_dataset.storage import StoragePath

READY_MARKER = "_READY"
BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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


def _local_folders(inbox: Path) -> dict[str, list[tuple[str, float]]]:
    """Each folder of the inbox with its files (path inside the folder, modification time)."""
    return {
        folder.name: [(p.relative_to(folder).as_posix(), p.stat().st_mtime) for p in folder.rglob("*") if p.is_file()]
        for folder in inbox.iterdir()
        if folder.is_dir()
    }


def _remote_folders(inbox: StoragePath) -> dict[str, list[tuple[str, float]]]:
    # One recursive listing per scan (paginated by the store), not one request per folder and file.
    base = inbox.path.rstrip("/")
    folders: dict[str, list[tuple[str, float]]] = {}
    for name, info in inbox.fs.find(base, detail=True).items():
        folder, _, inside = name[len(base) + 1:].partition("/")
        if inside:
            folders.setdefault(folder, []).append((inside, _listing_time(info)))
    return folders


def scan_inbox(inbox: StoragePath, settle_seconds: float = 60.0, now: float | None = None) -> InboxScan:
    """Classify every folder of the inbox; batch names are sorted for deterministic runs.

    On object storage a folder exists once it holds a file, and times come from the listing
    (S3's ``LastModified``); writing ``_READY`` last is the reliable signal there.
    """
    now = time.time() if now is None else now
    ready, waiting, invalid = [], [], []
    if not inbox.is_dir():
        return InboxScan([], [], [])
    folders = _local_folders(inbox) if isinstance(inbox, Path) else _remote_folders(inbox)
    for name in sorted(folders):
        files = folders[name]
        if not BATCH_NAME.match(name) or name == "reports":
            invalid.append(name)
            continue
        if any(inside == READY_MARKER for inside, _ in files):
            ready.append(name)
            continue
        newest = max((mtime for _, mtime in files), default=None)
        if newest is not None and now - newest >= settle_seconds:
            ready.append(name)
        else:
            waiting.append(name)
    return InboxScan(ready, waiting, invalid)


def mark_ready(folder: StoragePath) -> None:
    (folder / READY_MARKER).touch()
