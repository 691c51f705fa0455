"""Sealing, checking and publishing releases: read-only folders, ``release.json`` checksums, upload
to an object store with ``release.json`` last, and the listing of sealed versions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qwen_dataset.store.layout import relative_files, upload_folder
from qwen_dataset.store.paths import StoragePath, is_remote, sha256_file

RELEASE_FILE = "release.json"
READ_ONLY_FILE = 0o444
READ_ONLY_DIR = 0o555


class ReleaseConflictError(RuntimeError):
    """A release folder exists under this version but its content is not what these inputs give."""


@dataclasses.dataclass(frozen=True)
class ReleaseInfo:
    version: str
    digest: str  # full sha256 the version is cut from
    path: StoragePath
    created: bool  # False when an identical release already existed
    counts: dict[str, Any]
    files: list[str]  # relative paths, sorted


def file_entries(
    root: Path, files: Sequence[str], known_sha256: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """``release.json``'s entry of each file: its sha256 and size. ``known_sha256`` gives the
    checksums already known (a picture that is its content-addressed blob), which are not read again."""
    known = known_sha256 or {}
    base = str(root)
    entries = {}
    for name in files:
        path = os.path.join(base, name)
        entries[name] = {"sha256": known.get(name) or sha256_file(Path(path)), "bytes": os.stat(path).st_size}
    return entries


def seal_folder(root: Path) -> None:
    """Read-only files and folders, deepest first (a read-only folder cannot be changed below)."""
    folders = [str(root)]
    for folder in folders:  # grows while it is walked: every folder, parents before children
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                else:  # a link to a folder makes that folder read-only, not a file
                    os.chmod(entry.path, READ_ONLY_DIR if entry.is_dir() else READ_ONLY_FILE)
    for folder in reversed(folders):
        os.chmod(folder, READ_ONLY_DIR)


def remove_tree(path: Path) -> None:
    """Delete a (possibly sealed) folder: give folders back their write bit first."""
    if not path.exists():
        return
    for folder in [path, *(p for p in path.rglob("*") if p.is_dir())]:
        os.chmod(folder, stat.S_IRWXU)
    shutil.rmtree(path)


def verify_release(path: Path, checksums: bool = True) -> list[str]:
    """Problems found in a release folder (empty when it is intact): files added, missing, changed."""
    manifest_path = path / RELEASE_FILE
    if not manifest_path.is_file():
        return [f"{manifest_path} is missing"]
    recorded = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    present = set(relative_files(path)) - {RELEASE_FILE}
    problems = [f"unexpected file {name}" for name in sorted(present - set(recorded))]
    problems += [f"missing file {name}" for name in sorted(set(recorded) - present)]
    for name in sorted(present & set(recorded)):
        entry = recorded[name]
        if (path / name).stat().st_size != entry["bytes"]:
            problems.append(f"{name} has {(path / name).stat().st_size} bytes, recorded {entry['bytes']}")
        elif checksums and sha256_file(path / name) != entry["sha256"]:
            problems.append(f"{name} does not match its recorded sha256")
    return problems


def publish_release(info: ReleaseInfo, releases_root: StoragePath) -> ReleaseInfo:
    """Upload a sealed local release to a remote ``releases_root`` (a local root needs nothing).

    The same rules as on disk: ``release.json`` goes last, so a release is complete once it is
    there; an existing one with the same digest is kept as it is, one with another digest raises
    :class:`ReleaseConflictError`. An upload cut short leaves no ``release.json`` and is redone.
    """
    if not is_remote(releases_root):
        return info
    target = releases_root / info.version
    marker = target / RELEASE_FILE
    if marker.exists():
        published = json.loads(marker.read_text())
        if published.get("digest") != info.digest:
            raise ReleaseConflictError(
                f"{target} holds a release with digest {published.get('digest')}, not {info.digest}: a release "
                "changed under its version; move it aside and materialize the release again"
            )
        return dataclasses.replace(info, path=target, created=False)
    assert not is_remote(info.path), "a release is assembled and sealed in a local folder"
    upload_folder(info.path, target, mirror=True, last=[RELEASE_FILE])
    return dataclasses.replace(info, path=target, created=True)


def list_releases(releases_root: Path) -> list[str]:
    """Versions present under ``releases_root`` (sealed folders only, not staging leftovers)."""
    root = Path(releases_root)
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / RELEASE_FILE).is_file()
    )
