"""Versioned, immutable dataset releases assembled from the batches that passed their gates.

:func:`assemble_release` writes ``<releases_root>/<version>/``::

    frames.parquet                 every frame, with ``split`` and ``image`` (path in the release)
    annotations.parquet            the final annotations (status ok), with ``split``
    augmentation_lineage.parquet   what produced each augmented annotation (when there are any)
    splits.json                    train / val / test: upload ids and frame ids
    images/<frame_id>.png|jpg      the pictures (hard links to the blobs; copies across file systems)
    ...                            the dataset formats, written by the caller's ``write_formats``
    README.md                      the dataset card
    release.json                   version, digest, counts, and sha256 + size of every file

``version`` is the first 16 hex digits of a sha256 over the canonical manifests (rows sorted by id,
columns by name, values as JSON) and the card's inputs (name, split ratios and salt, QC figures,
batch names). The same inputs therefore give the same version, and a changed label, frame, split
or QC figure gives a new one.

Immutable: the release is built in a hidden staging folder beside its final place, made read-only
(files 0444, folders 0555) and renamed into place in one step, so a reader never sees half a
release. When ``<version>/`` already exists, it is checked instead of rewritten: same digest and
the same files (with the recorded sizes, or checksums when asked) -> it is returned as it is;
anything else raises :class:`ReleaseConflictError`, since a release that changed under its
version is not one anybody should train on.

Images are hard-linked, so the linked blobs become read-only too; blobs are content-addressed and
never rewritten in place, so that only makes them safer.

Splits are by upload (:func:`split_for_upload`): every frame of one video, every page of one PDF,
and every augmented copy of a frame (which keeps its source's ``upload_id``) land in the same split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from qwen_dataset.records import AnnotationStatus, Source, load_payload
from qwen_dataset.storage import (
    BlobStore,
    StoragePath,
    atomic_write_text,
    is_remote,
    relative_files,
    sha256_file,
    upload_folder,
)
from qwen_dataset.text import guess_language

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
VERSION_HEX = 16
RELEASE_FILE = "release.json"
CARD_FILE = "README.md"
JPEG_MAGIC = b"\xff\xd8\xff"
LANGUAGES = ("zh", "en", "mixed", "other")
READ_ONLY_FILE = 0o444
READ_ONLY_DIR = 0o555


class ReleaseConflictError(RuntimeError):
    """A release folder exists under this version but its content is not what these inputs give."""


@dataclasses.dataclass(frozen=True)
class BatchExport:
    """One batch that passed its gates.

    ``export_dir`` is the batch's ``exports/<batch>/``; its ``images/<frame_id>.*`` are used when
    present (else the frame's blob, when :func:`assemble_release` is given the blob store).
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

    def image_ref(self, frame_id: str) -> str:
        """Path of a frame's picture relative to the release folder (``images/<frame_id>.png``)."""
        return self.images[frame_id]

    def split(self, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Frames and annotations of one split."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; splits are {SPLITS}")
        return self.frames[self.frames["split"] == name], self.annotations[self.annotations["split"] == name]


@dataclasses.dataclass(frozen=True)
class ReleaseInfo:
    version: str
    digest: str  # full sha256 the version is cut from
    path: StoragePath
    created: bool  # False when an identical release already existed
    counts: dict[str, Any]
    files: list[str]  # relative paths, sorted


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or any(r < 0 for r in values) or abs(sum(values) - 1.0) > 1e-9:
        raise ValueError(f"split ratios must be three non-negative numbers (train, val, test) summing to 1, got {ratios!r}")
    return values  # type: ignore[return-value]


def split_for_upload(upload_id: str, ratios: Sequence[float] = DEFAULT_RATIOS, salt: str = "") -> str:
    """``train`` / ``val`` / ``test`` for an upload: sha256(salt + upload_id) read as a number in [0, 1).

    Depends on nothing but the id, so an upload keeps its split when other uploads come and go.

    >>> split_for_upload("a" * 64) == split_for_upload("a" * 64)
    True
    """
    train, val, _ = check_ratios(ratios)
    bucket = int(hashlib.sha256(f"{salt}{upload_id}".encode()).hexdigest()[:16], 16) / 16**16
    if bucket < train:
        return "train"
    return "val" if bucket < train + val else "test"


def assign_splits(upload_ids: Iterable[str], ratios: Sequence[float] = DEFAULT_RATIOS, salt: str = "") -> list[str]:
    """:func:`split_for_upload` for many ids (each distinct id hashed once)."""
    cache: dict[str, str] = {}
    result = []
    for upload_id in upload_ids:
        if upload_id not in cache:
            cache[upload_id] = split_for_upload(upload_id, ratios, salt)
        result.append(cache[upload_id])
    return result


# --------------------------------------------------------------------------------------------
# Canonical manifests and the version
# --------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def canonical_json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False, default=_json_default)
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


def release_digest(frames: pd.DataFrame, annotations: pd.DataFrame, lineage: pd.DataFrame,
                   metadata: Mapping[str, Any]) -> str:
    """sha256 over the canonical manifests and the card's inputs (see the module docstring)."""
    digest = hashlib.sha256()
    _update_with_table(digest, "frames", frames, "frame_id")
    _update_with_table(digest, "annotations", annotations, "annotation_id")
    _update_with_table(digest, "augmentation_lineage", lineage, "annotation_id")
    digest.update(f"metadata {canonical_json(dict(metadata))}\n".encode())
    return digest.hexdigest()


def _merge(tables: Sequence[pd.DataFrame], key: str, what: str) -> pd.DataFrame:
    """Concatenate, dropping exact duplicate rows; the same id with different content is an error."""
    non_empty = [table for table in tables if len(table)]
    if not non_empty:
        return tables[0].iloc[0:0].copy() if tables else pd.DataFrame()
    merged = pd.concat(non_empty, ignore_index=True)
    as_text = merged.astype(str)
    merged = merged[~as_text.duplicated()].reset_index(drop=True)
    clashes = merged[key][merged[key].duplicated()].unique().tolist()
    if clashes:
        raise ValueError(
            f"{len(clashes)} {what} id(s) appear in several batches with different content (first: {clashes[:5]}); "
            f"a release needs one version of each — re-export the batches or release them separately"
        )
    return merged


def _check_references(frames: pd.DataFrame, annotations: pd.DataFrame) -> None:
    known_frames = set(frames["frame_id"])
    known_uploads = set(frames["upload_id"])
    orphan = [
        row.annotation_id for row in annotations.itertuples(index=False)
        if (row.frame_id and row.frame_id not in known_frames) or (not row.frame_id and row.upload_id not in known_uploads)
    ]
    if orphan:
        raise ValueError(
            f"{len(orphan)} annotation(s) point at frames or uploads missing from the release's frames "
            f"(first: {orphan[:5]}); pass each batch's frames together with its annotations"
        )


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _picture_of(frame_id: str, blob_uri: str, export_dir: StoragePath | None, blobs: BlobStore | None) -> Path | None:
    # A remote export folder is not read picture by picture: the blob cache has the same bytes.
    if export_dir is not None and not is_remote(export_dir):
        for candidate in sorted((export_dir / "images").glob(f"{glob_escape(frame_id)}.*")):
            return candidate
    if blobs is not None and blob_uri:
        try:
            path = blobs.local_path(blob_uri)
        except FileNotFoundError:
            return None
        if path.is_file():
            return path
    return None


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def _extension(path: Path) -> str:
    with path.open("rb") as handle:
        return ".jpg" if handle.read(3) == JPEG_MAGIC else ".png"


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _place_images(frames: pd.DataFrame, export_dirs: Mapping[str, StoragePath | None], blobs: BlobStore | None,
                  staging: Path) -> list[str]:
    """Link every frame's picture into ``images/``; returns the relative paths in frame order.

    ``export_dirs`` maps a frame id to the export folder of the batch it came with.
    """
    refs, missing = [], []
    for row in frames.itertuples(index=False):
        source = _picture_of(row.frame_id, row.blob_uri, export_dirs.get(row.frame_id), blobs)
        if source is None:
            missing.append(row.frame_id)
            refs.append("")
            continue
        relative = f"images/{row.frame_id}{_extension(source)}"
        _link_or_copy(source, staging / relative)
        refs.append(relative)
    if missing:
        raise ValueError(
            f"{len(missing)} frame(s) have no picture in their batch's export folder"
            f"{'' if blobs is not None else ' (and no blob store was given)'} (first: {missing[:5]}); "
            f"export the batches first or pass blobs=StorageLayout(root).blobs"
        )
    return refs


# --------------------------------------------------------------------------------------------
# Card
# --------------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        items: list[tuple[str, Any]] = []
        for key in sorted(value, key=str):
            items += _flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
        return items
    if isinstance(value, float):
        return [(prefix, f"{value:.4g}")]
    return [(prefix, value)]


def text_languages(annotations: pd.DataFrame) -> Counter[tuple[str, str]]:
    """``(task, language)`` -> number of text items (ocr regions, gui elements with text)."""
    counts: Counter[tuple[str, str]] = Counter()
    for row in annotations.itertuples(index=False):
        payload = load_payload(row.payload)
        if row.task == "ocr":
            for region in payload.get("regions", []):
                language = region.get("language") or guess_language(region.get("text", ""))
                counts[(row.task, language if language in LANGUAGES else "other")] += 1
        elif row.task == "gui_action":
            for element in payload.get("elements", []):
                if str(element.get("text", "")).strip():
                    counts[(row.task, guess_language(element["text"]))] += 1
    return counts


def render_card(name: str, version: str, digest: str, frames: pd.DataFrame, annotations: pd.DataFrame,
                lineage: pd.DataFrame, qc: Mapping[str, Any], ratios: Sequence[float], salt: str,
                batches: Sequence[Mapping[str, Any]], excluded: int, files: Sequence[str]) -> str:
    """The dataset card (Markdown); deterministic for the same inputs."""
    parts = [
        f"# {name} — release {version}",
        "",
        "Assembled by qwen-dataset from batches that passed their quality gates. This folder is "
        f"immutable; any change to its data makes a new version. Content digest: `{digest}`.",
        "",
        "## Contents",
        "",
        _table(["split", "uploads", "frames", "annotations"], [
            *[(split, frames.loc[frames["split"] == split, "upload_id"].nunique(), int((frames["split"] == split).sum()),
               int((annotations["split"] == split).sum())) for split in SPLITS],
            ("total", frames["upload_id"].nunique(), len(frames), len(annotations)),
        ]),
        "",
        f"Annotations that failed (status other than ok) are not part of the release: {excluded}.",
        "",
        "## Annotations by task",
        "",
        _table(["task", *SPLITS, "total"], [
            (task, *[int(((annotations["task"] == task) & (annotations["split"] == s)).sum()) for s in SPLITS],
             int((annotations["task"] == task).sum()))
            for task in sorted(annotations["task"].unique())
        ]),
        "",
        "## Text by task and language",
        "",
        "Text items are OCR regions and GUI elements that carry text; the language is the label's "
        "own (OCR) or guessed from the scripts of the text (GUI).",
        "",
    ]
    languages = text_languages(annotations)
    tasks_with_text = sorted({task for task, _ in languages})
    parts += [
        _table(["task", *LANGUAGES], [(task, *[languages[(task, lang)] for lang in LANGUAGES]) for task in tasks_with_text])
        if tasks_with_text else "No text items.",
        "",
        "## Provenance",
        "",
        _table(["source", "annotations"], [(s.value, int((annotations["source"] == s.value).sum())) for s in Source]),
        "",
        "Models (authors of AI annotations) and template versions:",
        "",
    ]
    ai = annotations[annotations["source"] == Source.AI.value]
    model_rows = ai.groupby(["task", "author", "template_version"]).size().reset_index(name="n")
    parts += [
        _table(["task", "model", "template version", "annotations"], model_rows.itertuples(index=False, name=None))
        if len(model_rows) else "No AI annotations.",
        "",
        _table(["task", "template version", "annotations"],
               annotations.groupby(["task", "template_version"]).size().reset_index(name="n").itertuples(index=False, name=None)),
        "",
        f"Human annotators and reviewers: {annotations.loc[annotations['source'] != Source.AI.value, 'author'].nunique()} "
        "distinct ids (the ids are in annotations.parquet, not in this card).",
        "",
        "## Quality control",
        "",
        _table(["figure", "value"], _flatten(qc)) if qc else "No QC figures were given for this release.",
        "",
    ]
    if len(lineage):
        augmented = lineage.groupby("pipeline").agg(frames=("frame_id", "nunique"), annotations=("annotation_id", "size"))
        parts += [
            "## Augmentation",
            "",
            "Augmented frames keep the upload (and so the split) of their source frame; "
            "augmentation_lineage.parquet gives the source and the exact random draw of each.",
            "",
            _table(["pipeline", "frames", "annotations"], augmented.reset_index().itertuples(index=False, name=None)),
            "",
        ]
    parts += [
        "## Lineage",
        "",
        _table(["batch", "frames", "annotations", "export folder"],
               [(b["batch"], b["frames"], b["annotations"], b["export_folder"] or "-") for b in batches]),
        "",
        "## Splits",
        "",
        f"By upload: sha256(salt + upload_id), read as a number in [0, 1), picks train below {ratios[0]:g}, "
        f"val below {ratios[0] + ratios[1]:g}, test above ({f'salt: `{salt}`' if salt else 'no salt'}). Frames of one video, pages of one "
        "PDF and augmented copies of a frame never land in two splits. splits.json lists the ids; "
        "frames.parquet and annotations.parquet carry a `split` column.",
        "",
        "## Files",
        "",
        *[f"- `{path}`" for path in files if not path.startswith("images/")],
        f"- `images/`: {sum(1 for path in files if path.startswith('images/'))} pictures",
        "",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Assembling
# --------------------------------------------------------------------------------------------


def _file_entries(root: Path, files: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {name: {"sha256": sha256_file(root / name), "bytes": (root / name).stat().st_size} for name in files}


def _seal(root: Path) -> None:
    """Read-only files and folders, deepest first (a read-only folder cannot be changed below)."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        os.chmod(path, READ_ONLY_DIR if path.is_dir() else READ_ONLY_FILE)
    os.chmod(root, READ_ONLY_DIR)


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
    return ReleaseInfo(recorded["version"], digest, path, False, recorded["counts"],
                       sorted([*recorded["files"], RELEASE_FILE]))


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
    batches: Sequence[BatchExport],
    releases_root: Path,
    *,
    qc: Mapping[str, Any] | None = None,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    salt: str = "",
    blobs: BlobStore | None = None,
    write_formats: Callable[[ReleaseStaging], None] | None = None,
    name: str = "qwen-dataset",
    verify_checksums: bool = False,
) -> ReleaseInfo:
    """Assemble (or find) the release of ``batches``; see the module docstring for the layout.

    Args:
        qc: QC figures for the card (plain JSON values; nested dicts become ``a.b`` rows). They
            are part of the version: other figures, other release.
        ratios, salt: the split by upload (train, val, test).
        blobs: where to find pictures that are not in a batch's ``export_dir/images``.
        write_formats: called with a :class:`ReleaseStaging` before the release is sealed, to
            write the dataset formats into it. Not called when the release already exists.
        verify_checksums: when the release exists, re-hash every file instead of comparing sizes.
    """
    if not batches:
        raise ValueError("a release needs at least one batch")
    ratios = check_ratios(ratios)
    qc = dict(qc or {})
    frames = _merge([b.frames for b in batches], "frame_id", "frame").sort_values("frame_id", kind="stable")
    if frames.empty:
        raise ValueError("the batches hold no frames; a release needs at least one annotated frame")
    all_annotations = _merge([b.annotations for b in batches], "annotation_id", "annotation")
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
    lineage_tables = [b.lineage for b in batches if b.lineage is not None and len(b.lineage)]
    lineage = _merge(lineage_tables, "annotation_id", "lineage") if lineage_tables else pd.DataFrame(
        columns=["frame_id", "annotation_id", "pipeline"])
    lineage = lineage[lineage["annotation_id"].isin(set(annotations["annotation_id"]))].reset_index(drop=True)
    batch_rows = [
        {"batch": b.batch, "frames": len(b.frames), "annotations": len(b.annotations),
         "export_folder": f"exports/{b.export_dir.name}/" if b.export_dir is not None else ""}
        for b in sorted(batches, key=lambda b: b.batch)
    ]
    metadata = {"name": name, "ratios": list(ratios), "salt": salt, "qc": qc, "batches": batch_rows}
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
        counts = _stage(staging, version, digest, frames, annotations, lineage, metadata, excluded,
                        {fid: b.export_dir for b in batches for fid in b.frames["frame_id"]}, blobs, write_formats)
        _seal(staging)
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


def _stage(staging: Path, version: str, digest: str, frames: pd.DataFrame, annotations: pd.DataFrame,
           lineage: pd.DataFrame, metadata: Mapping[str, Any], excluded: int,
           export_dirs: Mapping[str, StoragePath | None], blobs: BlobStore | None,
           write_formats: Callable[[ReleaseStaging], None] | None) -> dict[str, Any]:
    frames = frames.assign(image=_place_images(frames, export_dirs, blobs, staging))
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
        write_formats(ReleaseStaging(staging, frames, annotations, dict(zip(frames["frame_id"], frames["image"]))))
    counts = _counts(frames, annotations, excluded)
    files = relative_files(staging)
    card = render_card(metadata["name"], version, digest, frames, annotations, lineage, metadata["qc"],
                       metadata["ratios"], metadata["salt"], metadata["batches"], excluded,
                       sorted([*files, CARD_FILE, RELEASE_FILE]))
    atomic_write_text(staging / CARD_FILE, card)
    files = relative_files(staging)
    release = {
        "name": metadata["name"], "version": version, "digest": digest, "ratios": metadata["ratios"],
        "salt": metadata["salt"], "batches": metadata["batches"], "counts": counts,
        "files": _file_entries(staging, files),
    }
    atomic_write_text(staging / RELEASE_FILE, json.dumps(release, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    return counts


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
    upload_folder(Path(info.path), target, mirror=True, last=[RELEASE_FILE])
    return dataclasses.replace(info, path=target, created=True)


def list_releases(releases_root: Path) -> list[str]:
    """Versions present under ``releases_root`` (sealed folders only, not staging leftovers)."""
    root = Path(releases_root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / RELEASE_FILE).is_file())
