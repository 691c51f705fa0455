"""Each batch's release part, kept between releases so that a release reads only the batches that changed.

A release takes every eligible batch; before parts it read six Parquet files per batch on every
release (frames, final annotations, the quality report's headline row, the augmented frames,
annotations and lineage) and filtered them again, which made one more batch cost a release about
50 ms per batch already there. A *part* is what one batch brings a release when no earlier batch
brought any of its frames: its :class:`.assemble.BatchExport` tables (``batch_export`` with
nothing seen yet), and separately its headline row. Parts are kept in one folder (the release
work root's ``.parts/``: ``releases/.parts/`` on a folder root, the local cache on an object store),
a few consolidated Parquet files read in one go, so a release reads the manifests of new or
changed batches only.

A part is keyed by everything it is made of: the storage ids of the batch's latest
materializations of its inputs (what the release already asks the instance for), the size and
modification stamp of each manifest file it reads (a file rewritten without a materialization is
read again), the split ratios and whether augmented copies are taken. A new batch, new corrections,
a re-export or a re-augmentation changes the key, and the batch is read from its manifests again.

The cache never changes a release:

- a part is used as it is only when none of its frames came with an earlier batch of this release
  (the same file uploaded twice); otherwise that batch is read from its manifests as before;
- a part is kept only when its tables come back from Parquet exactly as they went in (columns,
  dtypes, each value and its type); any other part is read from its manifests every time;
- a missing, unreadable or half-replaced folder reads as empty: every batch from its manifests.

The folder is replaced as a whole (a sibling folder renamed into place), and its index and tables
carry one token, so a reader never mixes two writers' files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qwen_dataset.release.assemble import BatchExport
from qwen_dataset.release.selection import LatestMaterialization, batch_export, batch_export_and_real_frames
from qwen_dataset.store.layout import StorageLayout, replaced_folder
from qwen_dataset.store.paths import StoragePath, is_remote, read_parquet

PARTS_FOLDER = ".parts"
PARTS_FORMAT = 1
INDEX_FILE = "index.json"
TOKEN_KEY = b"qwen_parts_token"

# What a batch's part is made of: the assets whose manifests it reads.
PART_ASSETS = ("frames", "human_corrections", "augmented_dataset")
HEADLINE_ASSET = "qc_report"
AUGMENTED_TABLES = ("frames", "annotations", "lineage")

Log = Callable[[str], None]


#: A table as Arrow: ``(table, offset, rows)``, rows of a stored file or a table's own conversion.
ArrowRows = tuple[pa.Table, int, int]


@dataclasses.dataclass(frozen=True)
class Part:
    """Named tables and a few JSON values, stored under one key (``arrow``: the tables as stored)."""

    tables: Mapping[str, pd.DataFrame]
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    arrow: Mapping[str, ArrowRows] = dataclasses.field(default_factory=dict)


def _same_values(left: pd.Series, right: pd.Series) -> bool:
    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        if type(a) is not type(b):
            return False
        if a != b and not (isinstance(a, float) and math.isnan(a) and math.isnan(b)):
            return False
    return True


def same_table(left: pd.DataFrame, right: pd.DataFrame) -> bool:
    """Same columns, dtypes, and every value of the same type and equal (NaN equals NaN)."""
    if list(left.columns) != list(right.columns) or len(left) != len(right):
        return False
    return all(left[c].dtype == right[c].dtype and _same_values(left[c], right[c]) for c in left.columns)


def storable(tables: Mapping[str, pd.DataFrame], info: Mapping[str, Any]) -> Part | None:
    """The part with its Arrow tables, or None when a table would not come back from Parquet as it
    went in (columns, dtypes, each value and its type): the cache stores nothing else."""
    arrow: dict[str, ArrowRows] = {}
    for name, table in tables.items():
        try:
            converted = pa.Table.from_pandas(table, preserve_index=False)
            if not same_table(converted.to_pandas(), table):
                return None
        except (pa.ArrowException, TypeError, ValueError):
            return None
        arrow[name] = (converted, 0, len(converted))
    return Part(tables, info, arrow)


def _schema_id(schema: pa.Schema) -> str:
    text = schema.to_string(show_field_metadata=True, show_schema_metadata=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_token(table: pa.Table) -> pa.Table:
    return table.replace_schema_metadata({k: v for k, v in (table.schema.metadata or {}).items() if k != TOKEN_KEY})


def _coalesced(segments: list[ArrowRows]) -> list[pa.Table]:
    """The segments as few slices: neighbouring rows of one stored file become one slice."""
    merged: list[list[Any]] = []
    for table, offset, rows in segments:
        last = merged[-1] if merged else None
        if last is not None and last[0] is table and last[1] + last[2] == offset:
            last[2] += rows
        else:
            merged.append([table, offset, rows])
    return [table.slice(offset, rows) for table, offset, rows in merged]


class PartStore:
    """Parts in one local folder: ``index.json`` and one Parquet file per table name and schema.

    Tables of the same name and Arrow schema are concatenated into one file; the index records
    each part's offset and row count in it. :meth:`load` reads every file once; :meth:`save`
    writes the unchanged parts back from the rows it read, without converting them again.
    """

    def __init__(self, folder: Path, log: Log | None = None) -> None:
        self.folder = Path(folder)
        self._log = log or (lambda message: None)

    def load(self) -> dict[str, Part]:
        """Every stored part by key; an empty dict when the folder is missing or unreadable."""
        try:
            index = json.loads((self.folder / INDEX_FILE).read_text(encoding="utf-8"))
            if index.get("format") != PARTS_FORMAT:
                return {}
            token = index["token"].encode()
            arrow: dict[str, pa.Table] = {}
            frames: dict[str, pd.DataFrame] = {}
            for name in index["files"]:
                table = pq.read_table(self.folder / name)
                if (table.schema.metadata or {}).get(TOKEN_KEY) != token:
                    raise ValueError(f"{name} belongs to another write of the folder")
                arrow[name] = _without_token(table)
                frames[name] = arrow[name].to_pandas()
            parts: dict[str, Part] = {}
            for key, entry in index["parts"].items():
                located = entry["tables"].items()
                if any(offset + rows > len(arrow[file]) for file, offset, rows in entry["tables"].values()):
                    continue
                tables = {name: frames[file].iloc[offset : offset + rows] for name, (file, offset, rows) in located}
                rows_of = {name: (arrow[file], offset, rows) for name, (file, offset, rows) in located}
                parts[key] = Part(tables, entry.get("info", {}), rows_of)
            return parts
        except FileNotFoundError:
            return {}
        except Exception as error:  # a damaged cache is no error: the manifests are the truth
            self._log(
                f"release parts in {self.folder} are unreadable ({type(error).__name__}: {error}); "
                "every batch is read from its manifests"
            )
            return {}

    def save(self, parts: Mapping[str, Part]) -> None:
        """Replace the folder's content with ``parts`` (in one rename)."""
        token = uuid.uuid4().hex
        segments: dict[str, list[ArrowRows]] = {}
        lengths: dict[str, int] = {}
        entries: dict[str, dict[str, Any]] = {}
        for key, part in parts.items():
            tables: dict[str, list[Any]] = {}
            for name, (table, offset, rows) in part.arrow.items():
                file = f"{name}-{_schema_id(table.schema)}.parquet"
                segments.setdefault(file, []).append((table, offset, rows))
                tables[name] = [file, lengths.get(file, 0), rows]
                lengths[file] = lengths.get(file, 0) + rows
            entries[key] = {"tables": tables, "info": dict(part.info)}
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with replaced_folder(self.folder) as staging:
            for file, pieces in segments.items():
                table = pa.concat_tables(_coalesced(pieces)).combine_chunks()
                metadata = {**(table.schema.metadata or {}), TOKEN_KEY: token.encode()}
                pq.write_table(table.replace_schema_metadata(metadata), staging / file)
            index = {"format": PARTS_FORMAT, "token": token, "files": sorted(segments), "parts": entries}
            (staging / INDEX_FILE).write_text(json.dumps(index, sort_keys=True), encoding="utf-8")


def file_stamps(folder: StoragePath) -> dict[str, str]:
    """``relative path -> size and modification stamp`` of every file under ``folder``: one listing
    (a walk on disk, one ``find`` on an object store), not one request per file."""
    if is_remote(folder):
        base = folder.path.rstrip("/")
        try:
            found = folder.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        stamps = {}
        for path, info in found.items():
            stamp = [info.get(k) for k in ("size", "ETag", "LastModified", "mtime", "created") if info.get(k)]
            stamps[path[len(base) + 1 :]] = json.dumps(stamp, default=str)
        return stamps
    stamps = {}
    base = str(folder)
    for directory, _, names in os.walk(base):
        for name in names:
            path = os.path.join(directory, name)
            stat = os.stat(path)
            stamps[os.path.relpath(path, base)] = f"{stat.st_size}:{stat.st_mtime_ns}"
    return stamps


def _key(*values: Any) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:32]


class ReleaseParts:
    """The batches' headline rows and release parts, from the store where their keys still hold.

    Use :meth:`headlines`, then :meth:`batch_exports`, then :meth:`save` (which keeps the parts of
    this release only: a batch left out is read again when it comes back).
    """

    def __init__(
        self,
        layout: StorageLayout,
        latest: LatestMaterialization,
        folder: Path,
        *,
        ratios: Sequence[float],
        include_augmented: bool,
        log: Log | None = None,
    ) -> None:
        self.layout, self.latest = layout, latest
        self.ratios, self.include_augmented = list(ratios), include_augmented
        self.store = PartStore(folder, log)
        self.stored = self.store.load()
        self.kept: dict[str, Part] = {}
        self.read_from_manifests: set[str] = set()
        manifests = layout.root / "manifests"
        self._stamps = {asset: file_stamps(manifests / asset) for asset in (*PART_ASSETS, HEADLINE_ASSET)}

    def _stamp(self, asset: str, name: str) -> str:
        return self._stamps[asset].get(name, "")

    def _headline_key(self, batch: str) -> str:
        stamp = self._stamp(HEADLINE_ASSET, f"{batch}.parquet")
        return "headline:" + _key(PARTS_FORMAT, batch, self.latest(HEADLINE_ASSET, batch), stamp)

    def _part_key(self, batch: str) -> str:
        stamps = [self._stamp(asset, f"{batch}.parquet") for asset in ("frames", "human_corrections")]
        stamps += [self._stamp("augmented_dataset", f"{batch}/{name}.parquet") for name in AUGMENTED_TABLES]
        ids = [self.latest(asset, batch) for asset in PART_ASSETS]
        return "part:" + _key(PARTS_FORMAT, batch, ids, stamps, self.ratios, self.include_augmented)

    def _keep(self, key: str, tables: dict[str, pd.DataFrame], info: Mapping[str, Any] | None = None) -> None:
        part = storable(tables, info or {})
        if part is not None:
            self.kept[key] = part

    def headlines(self, names: Iterable[str]) -> dict[str, pd.DataFrame]:
        """Each batch's stored quality figures (its ``qc_report`` row); batches without one are absent."""
        found: dict[str, pd.DataFrame] = {}
        for batch in names:
            key = self._headline_key(batch)
            part = self.stored.get(key)
            if part is None:
                path = self.layout.manifest(HEADLINE_ASSET, batch)
                tables = {"headline": read_parquet(path)} if path.exists() else {}
                self._keep(key, tables)
            else:
                self.kept[key] = part
                tables = dict(part.tables)
            if "headline" in tables:
                found[batch] = tables["headline"]
        return found

    def _fresh_part(self, key: str, batch: str) -> Part:
        self.read_from_manifests.add(batch)
        export, real = batch_export_and_real_frames(
            self.latest, self.layout, batch, set(), ratios=self.ratios, include_augmented=self.include_augmented
        )
        tables = {"frames": export.frames, "annotations": export.annotations}
        if export.lineage is not None:
            tables["lineage"] = export.lineage
        self._keep(key, tables, {"real_frames": real})
        return Part(tables, {"real_frames": real})

    def batch_exports(self, names: Sequence[str]) -> list[BatchExport]:
        """What each of ``names`` brings the release, in order: the same as
        :func:`.selection.batch_export` over them with one ``seen`` set."""
        seen: set[str] = set()
        exports = []
        for batch in names:
            key = self._part_key(batch)
            part = self.stored.get(key)
            if part is None:
                part = self._fresh_part(key, batch)
            else:
                self.kept[key] = part
            real = part.tables["frames"]["frame_id"].iloc[: part.info["real_frames"]].tolist()
            if seen.isdisjoint(real):
                seen.update(real)
                exports.append(self._export(batch, part))
            else:  # the same file in an earlier batch: that batch keeps its frames
                self.read_from_manifests.add(batch)
                exports.append(
                    batch_export(
                        self.latest,
                        self.layout,
                        batch,
                        seen,
                        ratios=self.ratios,
                        include_augmented=self.include_augmented,
                    )
                )
        return exports

    def _export(self, batch: str, part: Part) -> BatchExport:
        return BatchExport(
            batch=batch,
            frames=part.tables["frames"],
            annotations=part.tables["annotations"],
            export_dir=self.layout.exports(batch),
            lineage=part.tables.get("lineage"),
        )

    def save(self) -> None:
        """Keep this release's parts for the next one (nothing is written when nothing changed)."""
        if self.kept.keys() != self.stored.keys():
            self.store.save(self.kept)
