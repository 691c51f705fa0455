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
read again), the split ratios, whether augmented copies are taken, and the code that makes parts. A new batch, new corrections,
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

from qwen_dataset.release import assemble, selection, splits
from qwen_dataset.release.assemble import MergedBatches, concat_tables, export_folder, picture_extensions
from qwen_dataset.release.selection import LatestMaterialization, batch_export, batch_export_and_real_frames
from qwen_dataset.store import paths
from qwen_dataset.store.layout import StorageLayout, relative_files, replaced_folder
from qwen_dataset.store.paths import StoragePath, is_remote, read_parquet

PARTS_FOLDER = ".parts"
PARTS_FORMAT = 1
# A part is what this code made of the manifests: other code (an edit to what a batch brings or how
# splits fall), other parts. The modules' bytes enter every key, so an upgrade re-reads every batch once.
# The pandas and pyarrow versions too: their dtype rules decide what a stored table reads back as.
PART_CODE = hashlib.sha256(
    b"".join(Path(module.__file__).read_bytes() for module in (selection, splits, assemble, paths) if module.__file__)
    + Path(__file__).read_bytes()
    + f"pandas {pd.__version__} pyarrow {pa.__version__}".encode()
).hexdigest()[:16]
INDEX_FILE = "index.json"
TOKEN_KEY = b"qwen_parts_token"

# What a batch's part is made of: the assets whose manifests it reads.
PART_ASSETS = ("frames", "human_corrections", "augmented_dataset")
HEADLINE_ASSET = "qc_report"
AUGMENTED_TABLES = ("frames", "annotations", "lineage")

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Rows:
    """A part's table: ``rows`` rows from ``offset`` of a stored file's table (or the part's own
    table, from 0), as pandas and, when it can be stored, as Arrow."""

    frame: pd.DataFrame
    arrow: pa.Table | None
    offset: int
    rows: int

    def table(self) -> pd.DataFrame:
        if self.offset == 0 and self.rows == len(self.frame):
            return self.frame
        return self.frame.iloc[self.offset : self.offset + self.rows]


@dataclasses.dataclass(frozen=True)
class Part:
    """Named tables and a few JSON values, stored under one key."""

    tables: Mapping[str, Rows]
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def storable(self) -> bool:
        return all(rows.arrow is not None for rows in self.tables.values())


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


def new_part(tables: Mapping[str, pd.DataFrame], info: Mapping[str, Any]) -> Part:
    """A part of freshly read tables; a table that would not come back from Parquet as it went in
    (columns, dtypes, each value and its type) has no Arrow form, and the part is not stored."""
    return Part({name: Rows(table, _exact_arrow(table), 0, len(table)) for name, table in tables.items()}, info)


def _exact_arrow(table: pd.DataFrame) -> pa.Table | None:
    try:
        converted = pa.Table.from_pandas(table, preserve_index=False)
        return converted if same_table(converted.to_pandas(), table) else None
    except (pa.ArrowException, TypeError, ValueError):
        return None


def _schema_id(schema: pa.Schema) -> str:
    text = schema.to_string(show_field_metadata=True, show_schema_metadata=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_token(table: pa.Table) -> pa.Table:
    return table.replace_schema_metadata({k: v for k, v in (table.schema.metadata or {}).items() if k != TOKEN_KEY})


def coalesced(segments: Iterable[Rows]) -> list[Rows]:
    """The same rows in as few pieces: neighbouring rows of one stored table become one piece."""
    merged: list[Rows] = []
    for piece in segments:
        last = merged[-1] if merged else None
        if last is not None and last.frame is piece.frame and last.offset + last.rows == piece.offset:
            merged[-1] = dataclasses.replace(last, rows=last.rows + piece.rows)
        else:
            merged.append(piece)
    return merged


class PartStore:
    """Parts in one local folder: ``index.json`` and one Parquet file per table name and schema.

    Tables of the same name and Arrow schema are concatenated into one file; the index records
    each part's offset and row count in it. :meth:`load` reads every file once; :meth:`save`
    writes the unchanged parts back from the rows it read, without converting them again.
    """

    def __init__(self, folder: Path, log: Log | None = None) -> None:
        self.folder = Path(folder)
        self.log: Log = log or (lambda message: None)

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
                tables = {name: Rows(frames[file], arrow[file], offset, rows) for name, (file, offset, rows) in located}
                parts[key] = Part(tables, entry.get("info", {}))
            return parts
        except FileNotFoundError:
            return {}
        except Exception as error:  # a damaged cache is no error: the manifests are the truth
            self.log(
                f"release parts in {self.folder} are unreadable ({type(error).__name__}: {error}); "
                "every batch is read from its manifests"
            )
            return {}

    def save(self, parts: Mapping[str, Part]) -> None:
        """Replace the folder's content with ``parts`` (in one rename)."""
        token = uuid.uuid4().hex
        segments: dict[str, list[Rows]] = {}
        lengths: dict[str, int] = {}
        entries: dict[str, dict[str, Any]] = {}
        for key, part in parts.items():
            tables: dict[str, list[Any]] = {}
            for name, rows in part.tables.items():
                assert rows.arrow is not None, "only storable parts are saved"
                file = f"{name}-{_schema_id(rows.arrow.schema)}.parquet"
                segments.setdefault(file, []).append(rows)
                tables[name] = [file, lengths.get(file, 0), rows.rows]
                lengths[file] = lengths.get(file, 0) + rows.rows
            entries[key] = {"tables": tables, "info": dict(part.info)}
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with replaced_folder(self.folder) as staging:
            for file, pieces in segments.items():
                slices = [piece.arrow.slice(piece.offset, piece.rows) for piece in coalesced(pieces) if piece.arrow]
                table = pa.concat_tables(slices).combine_chunks()
                metadata = {**(table.schema.metadata or {}), TOKEN_KEY: token.encode()}
                pq.write_table(table.replace_schema_metadata(metadata), staging / file)
            index = {"format": PARTS_FORMAT, "token": token, "files": sorted(segments), "parts": entries}
            (staging / INDEX_FILE).write_text(json.dumps(index, sort_keys=True), encoding="utf-8")


#: The stamp of a file whose listing tells nothing but its size: such a file is never trusted to be
#: unchanged, so a part that reads it is made again from the manifests every time.
UNSTAMPED = None

# What an object store's listing entry says of a file besides its name; the size alone is not enough.
_SIZE_ONLY = {"size", "type"}


def _entry_stamp(info: Mapping[str, Any]) -> str | None:
    """Every scalar a store's listing gives for a file (ETag, LastModified, mtime, generation, ...,
    whatever the backend's spelling), or :data:`UNSTAMPED` when it gives only the size."""
    fields = {key: value for key, value in info.items() if key != "name" and isinstance(value, (str, int, float))}
    fields |= {key: str(value) for key, value in info.items() if hasattr(value, "isoformat")}
    if not fields.keys() - _SIZE_ONLY:
        return UNSTAMPED
    return json.dumps(fields, sort_keys=True, default=str)


def _is_manifest_name(relative: str) -> bool:
    # A writer's temp file (".<name>.<random>.tmp", renamed into place when complete) is no manifest.
    return not any(piece.startswith(".") for piece in relative.split("/"))


def file_stamps(folder: StoragePath) -> dict[str, str | None]:
    """``relative path -> stamp`` (size and modification) of every manifest under ``folder``: one
    listing (a walk on disk, one ``find`` on an object store), not one request per file. A writer's
    temp file, or a file gone by the time it is looked at (another run replacing its manifest), is
    left out instead of failing the release."""
    if is_remote(folder):
        base = folder.path.rstrip("/")
        try:
            found = folder.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        listed = {path[len(base) + 1 :]: _entry_stamp(info) for path, info in found.items()}
        return {name: stamp for name, stamp in listed.items() if _is_manifest_name(name)}
    try:
        names = relative_files(Path(str(folder)))
    except OSError:  # no folder (or not one): no manifests
        return {}
    stamps: dict[str, str | None] = {}
    base = str(folder)
    for relative in names:
        if not _is_manifest_name(relative):
            continue
        try:
            stat = os.stat(os.path.join(base, relative))
        except FileNotFoundError:
            continue
        stamps[relative] = f"{stat.st_size}:{stat.st_mtime_ns}"
    return stamps


def _concat(pieces: Sequence[Rows]) -> pd.DataFrame:
    """:func:`.assemble.concat_tables` of the pieces' tables, a run of one stored table as one slice."""
    return concat_tables([piece.table() for piece in coalesced(pieces)])


def _key(*values: Any) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:32]


class ReleaseParts:
    """The batches' headline rows and release parts, from the store where their keys still hold.

    Use :meth:`headlines`, then :meth:`release_batches`, then :meth:`save` (which keeps the parts of
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
        self.root = str(layout.root)
        self.ratios, self.include_augmented = list(ratios), include_augmented
        self.store = PartStore(folder, log)
        self.stored = self.store.load()
        self.kept: dict[str, Part] = {}
        self.read_from_manifests: set[str] = set()
        manifests = layout.root / "manifests"
        self._stamps = {asset: file_stamps(manifests / asset) for asset in (*PART_ASSETS, HEADLINE_ASSET)}

    def _stamp(self, asset: str, name: str) -> str | None:
        return self._stamps[asset].get(name, "")  # "": no such file (a batch without augmented copies)

    # Keys name the storage root: every object-store root shares one local cache, and two Dagster
    # instances hand out the same storage ids. No key (None): a file has no trustworthy stamp.

    def _headline_key(self, batch: str) -> str | None:
        stamp = self._stamp(HEADLINE_ASSET, f"{batch}.parquet")
        if stamp is UNSTAMPED:
            return None
        return "headline:" + _key(PART_CODE, self.root, batch, self.latest(HEADLINE_ASSET, batch), stamp)

    def _part_key(self, batch: str) -> str | None:
        stamps = [self._stamp(asset, f"{batch}.parquet") for asset in ("frames", "human_corrections")]
        stamps += [self._stamp("augmented_dataset", f"{batch}/{name}.parquet") for name in AUGMENTED_TABLES]
        if UNSTAMPED in stamps:
            return None
        ids = [self.latest(asset, batch) for asset in PART_ASSETS]
        return "part:" + _key(PART_CODE, self.root, batch, ids, stamps, self.ratios, self.include_augmented)

    def _stored(self, key: str | None) -> Part | None:
        return None if key is None else self.stored.get(key)

    def _use(self, key: str | None, part: Part) -> Part:
        if key is not None and part.storable:
            self.kept[key] = part
        return part

    def headlines(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Each batch's stored quality figures (its ``qc_report`` row, :data:`.selection.HeadlineRows`);
        batches without one are absent."""
        found: dict[str, dict[str, Any]] = {}
        # A stored table's rows as dicts, made once; the table is held beside them so its id() stays its own.
        records: dict[int, tuple[pd.DataFrame, list[dict[str, Any]]]] = {}
        for batch in names:
            key = self._headline_key(batch)
            part = self._stored(key)
            if part is None:
                path = self.layout.manifest(HEADLINE_ASSET, batch)
                part = new_part({"headline": read_parquet(path)} if path.exists() else {}, {})
            self._use(key, part)
            if "headline" in part.tables:
                rows = part.tables["headline"]
                if id(rows.frame) not in records:
                    records[id(rows.frame)] = (rows.frame, rows.frame.to_dict("records"))
                found[batch] = dict(records[id(rows.frame)][1][rows.offset]) if rows.rows else {}
        return found

    def _part(self, batch: str) -> Part:
        key = self._part_key(batch)
        part = self._stored(key)
        if part is None:
            self.read_from_manifests.add(batch)
            export, real = batch_export_and_real_frames(
                self.latest, self.layout, batch, set(), ratios=self.ratios, include_augmented=self.include_augmented
            )
            tables = {"frames": export.frames, "annotations": export.annotations}
            if export.lineage is not None:
                tables["lineage"] = export.lineage
            extensions = picture_extensions(export.frames, self.layout.blobs)
            part = new_part(tables, {"real_frames": real, "extensions": extensions})
        return self._use(key, part)

    def release_batches(self, names: Sequence[str]) -> MergedBatches:
        """What ``names`` bring the release, merged in their order: the same as
        :func:`.assemble.merge_batches` of :func:`.selection.batch_export` over them with one
        ``seen`` set, without a table per batch."""
        seen: set[str] = set()
        pieces: dict[str, list[Rows]] = {"frames": [], "annotations": [], "lineage": []}
        rows, export_dirs = [], {}
        extensions: dict[str, str] = {}
        # A stored table's frame ids, listed once; the table is held beside them so its id() stays its own.
        frame_ids: dict[int, tuple[pd.DataFrame, list[str]]] = {}
        for batch in names:
            part = self._part(batch)
            frames = part.tables["frames"]
            if id(frames.frame) not in frame_ids:
                frame_ids[id(frames.frame)] = (frames.frame, frames.frame["frame_id"].tolist())
            ids = frame_ids[id(frames.frame)][1][frames.offset : frames.offset + frames.rows]
            real = ids[: part.info["real_frames"]]
            if not seen.isdisjoint(real):  # the same file in an earlier batch: that batch keeps its frames
                self.read_from_manifests.add(batch)
                export = batch_export(
                    self.latest, self.layout, batch, seen, ratios=self.ratios, include_augmented=self.include_augmented
                )
                part = new_part(
                    {"frames": export.frames, "annotations": export.annotations}
                    | ({} if export.lineage is None else {"lineage": export.lineage}),
                    {},
                )
                ids = export.frames["frame_id"].tolist()
            else:
                seen.update(real)
            for name, table in part.tables.items():
                pieces[name].append(table)
            export_dir = self.layout.exports(batch)
            rows.append(
                {
                    "batch": batch,
                    "frames": part.tables["frames"].rows,
                    "annotations": part.tables["annotations"].rows,
                    "export_folder": export_folder(export_dir),
                }
            )
            export_dirs.update(dict.fromkeys(ids, export_dir))
            known = part.info.get("extensions") or []
            extensions.update((fid, ext) for fid, ext in zip(ids, known) if ext is not None)
        lineage = [table for table in pieces["lineage"] if table.rows]
        return MergedBatches(
            frames=_concat(pieces["frames"]),
            annotations=_concat(pieces["annotations"]),
            lineage=_concat(lineage) if lineage else None,
            rows=rows,
            export_dirs=export_dirs,
            extensions=extensions,
        )

    def save(self) -> None:
        """Keep this release's parts for the next one (nothing is written when nothing changed).

        A cache that cannot be written (a full disk, another release replacing the folder at the
        same moment) is no reason to fail the release: the next one reads those batches again.
        """
        if self.kept.keys() == self.stored.keys():
            return
        try:
            self.store.save(self.kept)
        except (OSError, pa.ArrowException) as error:
            self.store.log(
                f"release parts not kept in {self.store.folder} ({type(error).__name__}: {error}); "
                "the next release reads these batches from their manifests"
            )
