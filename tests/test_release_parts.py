"""Release parts: a release built from the kept parts is the release built from the manifests, byte for byte."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qwen_dataset.exporters.bundle import release_formats_writer
from qwen_dataset.records import AnnotationRecord, FrameRecord, to_frame
from qwen_dataset.release.assemble import assemble_release
from qwen_dataset.release.parts import PARTS_FOLDER, ReleaseParts
from qwen_dataset.release.selection import (
    QualityPolicy,
    batch_export,
    gate_decisions,
    quality_figures,
    quality_record,
    read_headlines,
    releasable_batches,
)
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import read_parquet, write_parquet
from tests.test_release import make_annotation, make_frame, upload_id

POLICY = QualityPolicy({"ocr_accuracy": 0.95}, {"ocr_accuracy": 0})
RATIOS = [0.5, 0.25, 0.25]  # half the uploads in train: augmented copies are both taken and left out


class Pipeline:
    """Manifests on a storage root and the order of their materializations, as the assets leave them."""

    def __init__(self, root: Path | str, cache: Path) -> None:
        self.layout = StorageLayout(root, cache=cache)
        self.layout.ensure()
        self.events: dict[tuple[str, str], int] = {}
        self.clock = itertools.count(1)

    def latest(self, asset: str, batch: str) -> float | None:
        return self.events.get((asset, batch))

    def materialize(self, batch: str, *assets: str) -> None:
        for asset in assets:
            self.events[(asset, batch)] = next(self.clock)

    def add_batch(self, batch: str, uploads: list[int], text: str = "Hello", augment: bool = True) -> None:
        frames = to_frame([make_frame(self.layout.blobs, upload_id(n), 0, batch) for n in uploads], FrameRecord)
        self.write(batch, "frames", frames)
        self.correct(batch, text)
        self.materialize(batch, "raw_uploads", "frames", "ai_annotations", "human_corrections")
        self.report(batch, 0.99)
        if augment:
            self.augment(batch)

    def correct(self, batch: str, text: str) -> None:
        frames = read_parquet(self.layout.manifest("frames", batch))
        records = [FrameRecord(**row) for row in frames.to_dict("records")]
        final = [make_annotation(frame, text=text, source="human", author="ada") for frame in records]
        self.write(batch, "human_corrections", to_frame(final, AnnotationRecord))

    def report(self, batch: str, ocr: float) -> None:
        self.write(batch, "qc_report", pd.DataFrame([{"batch": batch, "ocr_accuracy": ocr}]))
        self.materialize(batch, "qc_report", "exports")

    def augment(self, batch: str) -> None:
        from qwen_dataset.augment.pipelines import augment_batch, default_registry

        frames = read_parquet(self.layout.manifest("frames", batch))
        final = read_parquet(self.layout.manifest("human_corrections", batch))
        result = augment_batch(frames, final, self.layout.blobs, ["geometric"], registry=default_registry())
        folder = self.layout.manifest("augmented_dataset", batch).with_suffix("")
        for name in ("frames", "annotations", "lineage"):
            write_parquet(folder / f"{name}.parquet", getattr(result, name))
        self.materialize(batch, "augmented_dataset")

    def write(self, batch: str, asset: str, table: pd.DataFrame) -> None:
        write_parquet(self.layout.manifest(asset, batch), table)

    def names(self) -> list[str]:
        return sorted({batch for _, batch in self.events})


def release_files(pipeline: Pipeline, releases: Path, parts_folder: Path | None) -> tuple[dict, int | None]:
    """release.json of the release (digest and sha256 of every file) and how many batches were read
    from their manifests; with ``parts_folder`` None, the release as it was built before parts."""
    layout, latest, names = pipeline.layout, pipeline.latest, pipeline.names()
    exported = [batch for batch in names if latest("exports", batch) is not None]
    parts = None
    if parts_folder is None:
        headlines = read_headlines(layout, exported)
    else:
        parts = ReleaseParts(layout, latest, parts_folder, ratios=RATIOS, include_augmented=True)
        headlines = parts.headlines(exported)
    decisions = gate_decisions(headlines, exported, POLICY)
    eligible, _ = releasable_batches(latest, names, decisions)
    if parts is None:
        seen: set[str] = set()
        batches = [
            batch_export(latest, layout, batch, seen, ratios=RATIOS, include_augmented=True) for batch in eligible
        ]
    else:
        batches = parts.release_batches(eligible)
        parts.save()
    info = assemble_release(
        batches,
        releases,
        qc=quality_figures(headlines, eligible),
        quality=quality_record(decisions, eligible, POLICY),
        ratios=RATIOS,
        blobs=layout.blobs,
        write_formats=release_formats_writer(layout.blobs, layout.root),
    )
    recorded = json.loads((Path(info.path) / "release.json").read_text())
    for name in recorded["files"]:
        if name.startswith("annotations/instances_"):  # COCO's info holds the time it was written
            coco = json.loads((Path(info.path) / name).read_text())
            del coco["info"]["date_created"]
            recorded["files"][name] = coco
    return recorded, None if parts is None else len(parts.read_from_manifests)


@pytest.mark.parametrize("where", ["folder", "memory"])
def test_a_release_from_parts_is_the_release_from_the_manifests(tmp_path, where):
    root = tmp_path / "root" if where == "folder" else f"memory://parts-{tmp_path.name}"
    pipeline = Pipeline(root, tmp_path / "cache")
    parts_folder = tmp_path / "work" / PARTS_FOLDER
    steps = itertools.count()

    def same_release(read: int) -> dict:
        step = next(steps)
        truth, _ = release_files(pipeline, tmp_path / "truth" / str(step), None)
        cold, _ = release_files(pipeline, tmp_path / "cold" / str(step), tmp_path / "empty" / str(step))
        kept, read_from_manifests = release_files(pipeline, tmp_path / "kept" / str(step), parts_folder)
        assert kept == truth and cold == truth  # digest, counts, batches and the sha256 of every file
        assert read_from_manifests == read
        return truth

    pipeline.add_batch("b1", [1, 2, 3, 4])
    pipeline.add_batch("b2", [5, 6, 1])  # upload 1 again: its frame stays with b1
    first = same_release(read=2)
    assert first["counts"]["frames"] > 6  # augmented copies are in

    pipeline.add_batch("b3", [7, 8])
    same_release(read=2)  # the new batch, and b2 (it shares a frame with b1) from its manifests

    # New corrections on b1, reported and exported again; its augmented copies are older and stay out.
    pipeline.correct("b1", "Corrected text")
    pipeline.materialize("b1", "human_corrections")
    pipeline.report("b1", 0.99)
    recorrected = same_release(read=2)
    assert recorrected["digest"] != first["digest"]

    pipeline.report("b3", 0.5)  # a gate drops b3
    dropped = same_release(read=1)
    assert [row["batch"] for row in dropped["batches"]] == ["b1", "b2"]
    pipeline.report("b3", 0.99)
    same_release(read=2)  # b3 is back: its part was not kept while it was out

    # A manifest rewritten without a materialization (a repair by hand) is read again.
    pipeline.correct("b3", "Fixed by hand, no materialization")
    same_release(read=2)


def test_a_picture_is_opened_for_its_type_once_and_kept_parts_link_blobs_only(tmp_path, monkeypatch):
    """A release links 1,000s of pictures; the kept parts remember each blob's type, so a later
    release opens only the new batch's pictures."""
    from qwen_dataset.release import assemble

    pipeline = Pipeline(tmp_path / "root", tmp_path / "cache")
    parts_folder = tmp_path / "work" / PARTS_FOLDER
    pipeline.add_batch("b1", [1, 2, 3, 4])
    opened: list[str] = []
    real_extension = assemble._extension

    def counting(path):
        opened.append(Path(path).name)
        return real_extension(path)

    monkeypatch.setattr(assemble, "_extension", counting)
    first, _ = release_files(pipeline, tmp_path / "first", parts_folder)
    assert len(opened) == first["counts"]["frames"] > 4  # augmented copies too, each once
    pipeline.add_batch("b2", [5, 6], augment=False)
    opened.clear()
    second, read = release_files(pipeline, tmp_path / "second", parts_folder)
    assert read == 1 and len(opened) == 2  # b2's two pictures; b1's types came with its part
    monkeypatch.undo()
    truth, _ = release_files(pipeline, tmp_path / "truth", None)
    assert second == truth


def test_an_export_folder_picture_other_than_its_blob_gives_one_release_either_way(tmp_path):
    """A frame's picture is its blob on both paths; the export folder's own file is not taken on one only."""
    from qwen_dataset.ingest.frames import encode_picture

    pipeline = Pipeline(tmp_path / "root", tmp_path / "cache")
    pipeline.add_batch("b1", [1, 2], augment=False)
    frame_id = read_parquet(pipeline.layout.manifest("frames", "b1"))["frame_id"].iloc[0]
    images = Path(str(pipeline.layout.exports("b1"))) / "images"
    images.mkdir(parents=True)
    (images / f"{frame_id}.png").write_bytes(encode_picture(np.zeros((8, 12, 3), np.uint8), "png"))
    truth, _ = release_files(pipeline, tmp_path / "truth", None)
    assert release_files(pipeline, tmp_path / "kept", tmp_path / "work" / PARTS_FOLDER) == (truth, 1)


def test_a_damaged_parts_folder_is_read_from_the_manifests(tmp_path):
    pipeline = Pipeline(tmp_path / "root", tmp_path / "cache")
    parts_folder = tmp_path / "work" / PARTS_FOLDER
    pipeline.add_batch("b1", [1, 2], augment=False)
    pipeline.add_batch("b2", [3, 4], augment=False)
    truth, _ = release_files(pipeline, tmp_path / "truth", None)
    assert release_files(pipeline, tmp_path / "first", parts_folder) == (truth, 2)
    assert release_files(pipeline, tmp_path / "again", parts_folder) == (truth, 0)
    for path in parts_folder.glob("*.parquet"):
        path.write_bytes(b"not parquet")
    assert release_files(pipeline, tmp_path / "damaged", parts_folder) == (truth, 2)
    (parts_folder / "index.json").write_text("{")
    assert release_files(pipeline, tmp_path / "no-index", parts_folder) == (truth, 2)


def test_parts_that_cannot_be_kept_do_not_fail_the_release(tmp_path, monkeypatch):
    from qwen_dataset.release.parts import PartStore

    pipeline = Pipeline(tmp_path / "root", tmp_path / "cache")
    pipeline.add_batch("b1", [1, 2], augment=False)
    truth, _ = release_files(pipeline, tmp_path / "truth", None)

    def full_disk(self, parts):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PartStore, "save", full_disk)
    logged: list[str] = []
    parts = ReleaseParts(
        pipeline.layout,
        pipeline.latest,
        tmp_path / "work" / PARTS_FOLDER,
        ratios=RATIOS,
        include_augmented=True,
        log=logged.append,
    )
    parts.headlines(["b1"])
    merged = parts.release_batches(["b1"])
    parts.save()
    assert "No space left on device" in logged[0] and [row["batch"] for row in merged.rows] == ["b1"]
    monkeypatch.undo()
    assert release_files(pipeline, tmp_path / "after", tmp_path / "work" / PARTS_FOLDER) == (truth, 1)


def coarse_stamps(monkeypatch) -> None:
    """A store whose listing gives each file its size and a coarse modification time (files written
    in the same second look alike), as some backends do."""
    import fsspec.implementations.memory as memory

    listed = memory.MemoryFileSystem.find

    def coarse(self, path, *args, **kwargs):
        found = listed(self, path, *args, **kwargs)
        if not kwargs.get("detail"):
            return found
        return {name: {"name": name, "size": info["size"], "type": "file", "mtime": 1} for name, info in found.items()}

    monkeypatch.setattr(memory.MemoryFileSystem, "find", coarse)


def test_two_object_store_roots_sharing_one_cache_never_swap_parts(tmp_path, monkeypatch):
    # Every object-store root keeps its parts in the one local cache, and two instances hand out the
    # same storage ids: the same batch name, ids and stamps on two roots must still be two parts.
    coarse_stamps(monkeypatch)
    parts_folder = tmp_path / "cache" / "releases" / PARTS_FOLDER
    prod = Pipeline(f"memory://prod-{tmp_path.name}", tmp_path / "cache")
    staging = Pipeline(f"memory://staging-{tmp_path.name}", tmp_path / "cache")
    prod.add_batch("b1", [1, 2], text="Hello", augment=False)
    staging.add_batch("b1", [1, 2], text="Jello", augment=False)  # same length: same file sizes
    release_files(prod, tmp_path / "prod", parts_folder)
    truth, _ = release_files(staging, tmp_path / "truth", None)
    assert release_files(staging, tmp_path / "staging", parts_folder) == (truth, 1)


def test_a_store_listing_only_sizes_reads_every_batch_from_its_manifests(tmp_path, monkeypatch):
    import fsspec.implementations.memory as memory

    listed = memory.MemoryFileSystem.find

    def sizes_only(self, path, *args, **kwargs):
        found = listed(self, path, *args, **kwargs)
        if not kwargs.get("detail"):
            return found
        return {name: {k: v for k, v in info.items() if k in ("name", "size", "type")} for name, info in found.items()}

    monkeypatch.setattr(memory.MemoryFileSystem, "find", sizes_only)
    pipeline = Pipeline(f"memory://sizes-{tmp_path.name}", tmp_path / "cache")
    parts_folder = tmp_path / "work" / PARTS_FOLDER
    pipeline.add_batch("b1", [1, 2], augment=False)
    truth, _ = release_files(pipeline, tmp_path / "truth", None)
    assert release_files(pipeline, tmp_path / "first", parts_folder) == (truth, 1)
    pipeline.correct("b1", "Jello")  # rewritten in place, same size, no materialization
    truth, _ = release_files(pipeline, tmp_path / "truth-2", None)
    assert release_files(pipeline, tmp_path / "second", parts_folder) == (truth, 1)


def test_manifest_stamps_skip_temp_files_and_files_gone_while_listed(tmp_path, monkeypatch):
    import os

    from qwen_dataset.release.parts import file_stamps

    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("b1.parquet", "b2.parquet", ".b3.parquet.1a2b.tmp"):
        (folder / name).write_bytes(b"x")
    real_stat = os.stat

    def renamed_meanwhile(path, *args, **kwargs):
        if str(path).endswith("b2.parquet"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", renamed_meanwhile)
    assert sorted(file_stamps(folder)) == ["b1.parquet"]


def test_parts_of_every_task_come_back_as_the_manifests_give_them(tmp_path):
    import dataclasses

    from qwen_dataset.payloads import TASKS
    from qwen_dataset.records import annotation_id_for, dump_payload
    from qwen_dataset.release.assemble import merge_batches
    from qwen_dataset.release.parts import same_table

    templates = Path(__file__).resolve().parents[1] / "qwen_dataset" / "prelabel" / "templates"
    pipeline = Pipeline(tmp_path / "root", tmp_path / "cache")
    pipeline.add_batch("b1", [1, 2], augment=False)
    frames = read_parquet(pipeline.layout.manifest("frames", "b1"))
    final = []
    for record in [FrameRecord(**row) for row in frames.to_dict("records")]:
        for task in TASKS:  # each task's own payload shape (the template's example answer)
            payload = json.loads((templates / task / "example.json").read_text(encoding="utf-8"))
            annotation = make_annotation(record, source="human", author="ada")
            final.append(
                dataclasses.replace(
                    annotation,
                    task=task,
                    payload=dump_payload(payload),
                    annotation_id=annotation_id_for(record.frame_id, task, "human", "ada"),
                )
            )
    pipeline.write("b1", "human_corrections", to_frame(final, AnnotationRecord))
    pipeline.materialize("b1", "human_corrections")
    pipeline.report("b1", 0.99)

    seen: set[str] = set()
    truth = merge_batches(
        [batch_export(pipeline.latest, pipeline.layout, "b1", seen, ratios=RATIOS, include_augmented=True)]
    )
    assert sorted(set(truth.annotations["task"])) == sorted(TASKS)
    parts_folder = tmp_path / "work" / PARTS_FOLDER
    for read in (1, 0):  # from the manifests, then from the kept part
        parts = ReleaseParts(pipeline.layout, pipeline.latest, parts_folder, ratios=RATIOS, include_augmented=True)
        merged = parts.release_batches(["b1"])
        parts.save()
        assert len(parts.read_from_manifests) == read
        assert same_table(merged.frames, truth.frames) and same_table(merged.annotations, truth.annotations)
        assert merged.rows == truth.rows
