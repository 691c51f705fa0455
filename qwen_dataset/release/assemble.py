"""Assembling a release from batch exports: merged manifests with their split, pictures, formats,
the card, and a version that is the content hash of its inputs.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from qwen_dataset.records import AnnotationStatus
from qwen_dataset.release.card import CARD_FILE, render_card
from qwen_dataset.release.publish import (
    RELEASE_FILE,
    ReleaseConflictError,
    ReleaseInfo,
    file_entries,
    remove_tree,
    seal_folder,
    verify_release,
)
from qwen_dataset.release.splits import DEFAULT_RATIOS, SPLITS, assign_splits, check_ratios, split_for_upload
from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.layout import relative_files
from qwen_dataset.store.paths import StoragePath, atomic_write_text, is_remote

VERSION_HEX = 16
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclasses.dataclass(frozen=True)
class BatchExport:
    """One batch that passed its gates.

    ``export_dir`` is the batch's ``exports/<batch>/``. A frame's picture is its blob when
    :func:`assemble_release` is given the blob store and the blob is there; else the export
    folder's ``images/<frame_id>.*`` (the export links the same blob there).
    ``lineage`` is the augmentation lineage of augmented frames in ``frames``, if any
    (:data:`qwen_dataset.augment.LINEAGE_COLUMNS`).
    """

    batch: str
    frames: pd.DataFrame
    annotations: pd.DataFrame
    export_dir: StoragePath | None = None
    lineage: pd.DataFrame | None = None


@dataclasses.dataclass(frozen=True)
class ReleaseStaging:
    """What ``write_formats`` gets: the staging folder and the release's manifests.

    Write the dataset formats under ``directory`` (e.g. one JSONL per split); image references
    come from :meth:`image_ref` (paths relative to the release folder).
    """

    directory: Path
    frames: pd.DataFrame  # with ``split`` and ``image`` columns
    annotations: pd.DataFrame  # with ``split``
    images: Mapping[str, str]  # frame_id -> picture path relative to the release folder
    version: str = ""  # the release's version: its folder will be releases/<version>/

    def image_ref(self, frame_id: str) -> str:
        """Path of a frame's picture relative to the release folder (``images/<frame_id>.png``)."""
        return self.images[frame_id]

    def split(self, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Frames and annotations of one split."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; splits are {SPLITS}")
        return self.frames[self.frames["split"] == name], self.annotations[self.annotations["split"] == name]


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# One encoder for every call: json.dumps with these options builds a new one each time (a release
# hashes every row of its manifests through it).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
)


def canonical_json(value: Any) -> str:
    try:
        return _CANONICAL.encode(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"release inputs must be plain JSON values (numbers, text, lists, dicts): {exc}") from exc


def _update_with_table(digest: Any, name: str, table: pd.DataFrame, key: str) -> None:
    columns = sorted(table.columns)
    ordered = table.sort_values(key, kind="stable")[columns].astype(object)
    ordered = ordered.where(ordered.notna(), None)
    digest.update(f"table {name} {canonical_json(columns)}\n".encode())
    for row in ordered.itertuples(index=False, name=None):
        digest.update(canonical_json(list(row)).encode())
        digest.update(b"\n")


def release_digest(
    frames: pd.DataFrame, annotations: pd.DataFrame, lineage: pd.DataFrame, metadata: Mapping[str, Any]
) -> str:
    """sha256 over the canonical manifests and the card's inputs (see the module docstring)."""
    digest = hashlib.sha256()
    _update_with_table(digest, "frames", frames, "frame_id")
    _update_with_table(digest, "annotations", annotations, "annotation_id")
    _update_with_table(digest, "augmentation_lineage", lineage, "annotation_id")
    digest.update(f"metadata {canonical_json(dict(metadata))}\n".encode())
    return digest.hexdigest()


def concat_tables(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The non-empty tables one after the other (all empty: the first one's columns, no rows)."""
    non_empty = [table for table in tables if len(table)]
    if not non_empty:
        return tables[0].iloc[0:0].copy() if tables else pd.DataFrame()
    return pd.concat(non_empty, ignore_index=True)


def _unique(merged: pd.DataFrame, key: str, what: str) -> pd.DataFrame:
    """Drop exact duplicate rows; the same id with different content is an error."""
    if merged.empty:
        return merged
    as_text = merged.astype(str)
    merged = merged[~as_text.duplicated()].reset_index(drop=True)
    clashes = merged[key][merged[key].duplicated()].unique().tolist()
    if clashes:
        raise ValueError(
            f"{len(clashes)} {what} id(s) appear in several batches with different content (first: {clashes[:5]}); "
            f"a release needs one version of each — re-export the batches or release them separately"
        )
    return merged


@dataclasses.dataclass(frozen=True)
class MergedBatches:
    """The batches' tables concatenated in batch order (:func:`merge_batches`), and what the
    release records of each batch; :class:`.parts.ReleaseParts` builds it without a table per batch."""

    frames: pd.DataFrame
    annotations: pd.DataFrame
    lineage: pd.DataFrame | None  # None: no batch brings augmented copies
    rows: list[dict[str, Any]]  # batch, frames, annotations, export_folder; in batch order
    export_dirs: Mapping[str, StoragePath | None]  # frame_id -> the export folder of its batch
    # frame_id -> its blob's picture type (".png", ".jpg"), where known from an earlier release
    extensions: Mapping[str, str] = dataclasses.field(default_factory=dict)


def export_folder(export_dir: StoragePath | None) -> str:
    return f"exports/{export_dir.name}/" if export_dir is not None else ""


def merge_batches(batches: Sequence[BatchExport]) -> MergedBatches:
    """The batches' tables one batch after the other, what :func:`assemble_release` takes them as."""
    lineage_tables = [b.lineage for b in batches if b.lineage is not None and len(b.lineage)]
    return MergedBatches(
        frames=concat_tables([b.frames for b in batches]),
        annotations=concat_tables([b.annotations for b in batches]),
        lineage=concat_tables(lineage_tables) if lineage_tables else None,
        rows=[
            {
                "batch": b.batch,
                "frames": len(b.frames),
                "annotations": len(b.annotations),
                "export_folder": export_folder(b.export_dir),
            }
            for b in batches
        ],
        export_dirs={fid: b.export_dir for b in batches for fid in b.frames["frame_id"]},
    )


def _check_references(frames: pd.DataFrame, annotations: pd.DataFrame) -> None:
    frame_ids = annotations["frame_id"]
    has_frame = frame_ids.notna() & (frame_ids.astype(str) != "")
    orphans = (has_frame & ~frame_ids.isin(set(frames["frame_id"]))) | (
        ~has_frame & ~annotations["upload_id"].isin(set(frames["upload_id"]))
    )
    orphan = annotations.loc[orphans, "annotation_id"].tolist()
    if orphan:
        raise ValueError(
            f"{len(orphan)} annotation(s) point at frames or uploads missing from the release's frames "
            f"(first: {orphan[:5]}); pass each batch's frames together with its annotations"
        )


def _listing(export_dir: Path, listings: dict[str, list[str]]) -> list[str]:
    """The sorted file names of ``export_dir/images``, listed once per folder (not once per frame)."""
    key = str(export_dir)
    if key not in listings:
        folder = export_dir / "images"
        listings[key] = sorted(os.listdir(folder)) if folder.is_dir() else []
    return listings[key]


def _exported_picture(frame_id: str, export_dir: StoragePath | None, listings: dict[str, list[str]]) -> Path | None:
    """The export folder's ``images/<frame_id>.*``, if the folder is local and has one."""
    # A remote export folder is not read picture by picture: the blob cache has the same bytes.
    if export_dir is None or is_remote(export_dir):
        return None
    # The first of the sorted names "<frame_id>.<anything>", as globbing "<frame_id>.*" finds.
    local = Path(str(export_dir))
    names = _listing(local, listings)
    prefix = f"{frame_id}."
    at = bisect.bisect_left(names, prefix)
    if at < len(names) and names[at].startswith(prefix):
        return local / "images" / names[at]
    return None


def _blob_file(blob_uri: str, blobs: BlobStore | None) -> Path | None:
    """The blob's own regular file (not a link planted in the store), or None."""
    if blobs is None or not blob_uri:
        return None
    try:
        path = blobs.local_path(blob_uri)
        return path if stat.S_ISREG(os.lstat(path).st_mode) else None
    except FileNotFoundError:  # a URL root without the object, or a blob gone
        return None


def _extension(path: Path) -> str:
    with path.open("rb") as handle:
        return ".jpg" if handle.read(3) == JPEG_MAGIC else ".png"


def _link_or_copy(source: Path, target: str) -> bool:
    """Hard-link ``source`` to ``target`` (True), or copy it where links are impossible (False)."""
    try:
        os.link(source, target)
        return True
    except OSError:
        shutil.copyfile(source, target)
        return False


@dataclasses.dataclass(frozen=True)
class PlacedImages:
    """The frames' picture paths relative to the release folder (in frame order), and the sha256
    of each picture that is its blob's own file."""

    refs: list[str]
    known_sha256: dict[str, str]


def picture_extensions(frames: pd.DataFrame, blobs: BlobStore) -> list[str | None]:
    """Each frame's picture type (".png" or ".jpg") from its blob's first bytes; None where the
    blob is not on this machine. A blob never changes, so a release may keep these for the next."""
    found: list[str | None] = []
    for blob_uri in frames["blob_uri"].tolist():
        blob = _blob_file(blob_uri, blobs)
        found.append(_extension(blob) if blob is not None else None)
    return found


def _place_images(
    frames: pd.DataFrame,
    export_dirs: Mapping[str, StoragePath | None],
    blobs: BlobStore | None,
    staging: Path,
    extensions: Mapping[str, str] | None = None,
) -> PlacedImages:
    """Link every frame's picture into ``images/``: its blob, else the picture in the export
    folder of the batch it came with (``export_dirs``: frame id -> folder).

    A picture's type is read from its first bytes unless ``extensions`` (frame id -> ".png" or
    ".jpg", kept from an earlier release) has it. A blob hard-linked into the release is recorded
    with the blob's content id as its sha256 (blobs are named by it and never rewritten), so
    sealing does not read it again; a copy or an export folder's picture is hashed when sealing.
    A blob damaged on disk is therefore recorded as what it should hold, and
    ``verify_release(checksums=True)``, which re-reads every file, reports it.
    """
    refs, missing, known = [], [], {}
    listings: dict[str, list[str]] = {}
    (staging / "images").mkdir(exist_ok=True)
    base = str(staging)
    extensions = extensions or {}
    for frame_id, blob_uri in zip(frames["frame_id"].tolist(), frames["blob_uri"].tolist(), strict=True):
        source = _blob_file(blob_uri, blobs)
        is_blob = source is not None
        if source is None:
            source = _exported_picture(frame_id, export_dirs.get(frame_id), listings)
        if source is None:
            missing.append(frame_id)
            refs.append("")
            continue
        extension = extensions.get(frame_id) if is_blob else None
        relative = f"images/{frame_id}{extension or _extension(source)}"
        if _link_or_copy(source, os.path.join(base, relative)) and is_blob:
            known[relative] = BlobStore.sha256_of(blob_uri)
        refs.append(relative)
    if missing:
        raise ValueError(
            f"{len(missing)} frame(s) have no picture in their batch's export folder"
            f"{'' if blobs is not None else ' (and no blob store was given)'} (first: {missing[:5]}); "
            f"export the batches first or pass blobs=StorageLayout(root).blobs"
        )
    return PlacedImages(refs, known)


def _existing(path: Path, digest: str, verify_checksums: bool) -> ReleaseInfo:
    manifest_path = path / RELEASE_FILE
    recorded = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    if recorded.get("digest") != digest:
        raise ReleaseConflictError(
            f"{path} exists but was built from other inputs (digest {recorded.get('digest', 'unknown')}, "
            f"expected {digest}); releases are immutable — remove it deliberately if it is garbage"
        )
    problems = verify_release(path, checksums=verify_checksums)
    if problems:
        raise ReleaseConflictError(
            f"{path} exists but its files changed since it was sealed ({'; '.join(problems[:5])}); "
            f"releases are immutable — restore it from a backup or remove it deliberately and rebuild"
        )
    return ReleaseInfo(
        recorded["version"], digest, path, False, recorded["counts"], sorted([*recorded["files"], RELEASE_FILE])
    )


def _counts(frames: pd.DataFrame, annotations: pd.DataFrame, excluded: int) -> dict[str, Any]:
    by_split = {
        split: {
            "uploads": int(frames.loc[frames["split"] == split, "upload_id"].nunique()),
            "frames": int((frames["split"] == split).sum()),
            "annotations": int((annotations["split"] == split).sum()),
        }
        for split in SPLITS
    }
    return {
        "uploads": int(frames["upload_id"].nunique()),
        "frames": len(frames),
        "annotations": len(annotations),
        "excluded_failed_annotations": excluded,
        "by_split": by_split,
        "by_task": {str(k): int(v) for k, v in annotations["task"].value_counts().sort_index().items()},
    }


def assemble_release(
    batches: Sequence[BatchExport] | MergedBatches,
    releases_root: Path,
    *,
    qc: Mapping[str, Any] | None = None,
    quality: Mapping[str, Any] | None = None,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    salt: str = "",
    blobs: BlobStore | None = None,
    write_formats: Callable[[ReleaseStaging], None] | None = None,
    name: str = "qwen-dataset",
    verify_checksums: bool = False,
) -> ReleaseInfo:
    """Assemble (or find) the release of ``batches``; see the module docstring for the layout.

    Args:
        batches: the batches in order, or their tables already merged (:class:`MergedBatches`).
        qc: QC figures for the card (plain JSON values; nested dicts become ``a.b`` rows). They
            are part of the version: other figures, other release.
        quality: the quality policy in force (targets, minimum samples, statuses per batch, the
            waivers that let a batch in); recorded in ``release.json`` and the card, part of the version.
        ratios, salt: the split by upload (train, val, test).
        blobs: where to find pictures that are not in a batch's ``export_dir/images``.
        write_formats: called with a :class:`ReleaseStaging` before the release is sealed, to
            write the dataset formats into it. Not called when the release already exists.
        verify_checksums: when the release exists, re-hash every file instead of comparing sizes.
    """
    merged = batches if isinstance(batches, MergedBatches) else merge_batches(batches)
    if not merged.rows:
        raise ValueError("a release needs at least one batch")
    ratios = check_ratios(ratios)
    qc = dict(qc or {})
    frames = _unique(merged.frames, "frame_id", "frame").sort_values("frame_id", kind="stable")
    if frames.empty:
        raise ValueError("the batches hold no frames; a release needs at least one annotated frame")
    all_annotations = _unique(merged.annotations, "annotation_id", "annotation")
    ok = all_annotations["status"] == AnnotationStatus.OK.value
    annotations = all_annotations[ok].sort_values("annotation_id", kind="stable").reset_index(drop=True)
    excluded = int((~ok).sum())
    _check_references(frames, annotations)
    frames = frames.reset_index(drop=True)
    frames["split"] = assign_splits(frames["upload_id"], ratios, salt)
    # An annotation follows its frame (video events, which have no frame, follow their upload).
    frame_split = dict(zip(frames["frame_id"], frames["split"]))
    annotations["split"] = [
        frame_split[frame_id] if frame_id else split_for_upload(upload_id, ratios, salt)
        for frame_id, upload_id in zip(annotations["frame_id"], annotations["upload_id"])
    ]
    lineage = (
        _unique(merged.lineage, "annotation_id", "lineage")
        if merged.lineage is not None
        else pd.DataFrame(columns=["frame_id", "annotation_id", "pipeline"])
    )
    lineage = lineage[lineage["annotation_id"].isin(set(annotations["annotation_id"]))].reset_index(drop=True)
    batch_rows = sorted(merged.rows, key=lambda row: row["batch"])
    metadata = {"name": name, "ratios": list(ratios), "salt": salt, "qc": qc, "batches": batch_rows}
    if quality:  # only when given, so releases assembled without it keep their versions
        metadata["quality"] = dict(quality)
    # The picture paths do not enter the digest: they follow from frame ids and file types.
    digest = release_digest(frames, annotations, lineage, metadata)
    version = digest[:VERSION_HEX]
    releases_root = Path(releases_root)
    target = releases_root / version
    if target.exists():
        return _existing(target, digest, verify_checksums)

    releases_root.mkdir(parents=True, exist_ok=True)
    staging = releases_root / f".staging-{version}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        counts = _stage(
            staging,
            version,
            digest,
            frames,
            annotations,
            lineage,
            metadata,
            excluded,
            merged.export_dirs,
            merged.extensions,
            blobs,
            write_formats,
        )
        seal_folder(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if target.exists():  # another run sealed the same version first
                remove_tree(staging)
                return _existing(target, digest, verify_checksums)
            raise
    except BaseException:
        remove_tree(staging)
        raise
    return ReleaseInfo(version, digest, target, True, counts, sorted(relative_files(target)))


def _stage(
    staging: Path,
    version: str,
    digest: str,
    frames: pd.DataFrame,
    annotations: pd.DataFrame,
    lineage: pd.DataFrame,
    metadata: Mapping[str, Any],
    excluded: int,
    export_dirs: Mapping[str, StoragePath | None],
    extensions: Mapping[str, str],
    blobs: BlobStore | None,
    write_formats: Callable[[ReleaseStaging], None] | None,
) -> dict[str, Any]:
    placed = _place_images(frames, export_dirs, blobs, staging, extensions)
    frames = frames.assign(image=placed.refs)
    frames.to_parquet(staging / "frames.parquet", index=False)
    annotations.to_parquet(staging / "annotations.parquet", index=False)
    if len(lineage):
        lineage.to_parquet(staging / "augmentation_lineage.parquet", index=False)
    splits = {
        split: {
            "uploads": sorted(frames.loc[frames["split"] == split, "upload_id"].unique().tolist()),
            "frames": frames.loc[frames["split"] == split, "frame_id"].tolist(),
        }
        for split in SPLITS
    }
    atomic_write_text(staging / "splits.json", json.dumps(splits, indent=1, ensure_ascii=False) + "\n")
    if write_formats is not None:
        images = dict(zip(frames["frame_id"], frames["image"]))
        write_formats(ReleaseStaging(staging, frames, annotations, images, version))
    counts = _counts(frames, annotations, excluded)
    files = relative_files(staging)
    card = render_card(
        metadata["name"],
        version,
        digest,
        frames,
        annotations,
        lineage,
        metadata["qc"],
        metadata["ratios"],
        metadata["salt"],
        metadata["batches"],
        excluded,
        sorted([*files, CARD_FILE, RELEASE_FILE]),
        quality=metadata.get("quality"),
    )
    atomic_write_text(staging / CARD_FILE, card)
    files = relative_files(staging)
    release = {
        "name": metadata["name"],
        "version": version,
        "digest": digest,
        "ratios": metadata["ratios"],
        "salt": metadata["salt"],
        "batches": metadata["batches"],
        "counts": counts,
        "quality": metadata.get("quality"),
        "files": file_entries(staging, files, placed.known_sha256),
    }
    atomic_write_text(staging / RELEASE_FILE, json.dumps(release, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    return counts
