"""Releases: content-addressed versions, immutability, splits by upload, the dataset card."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest

from qwen_dataset.ingest.frames import encode_picture
from qwen_dataset.records import (
    AnnotationRecord,
    FrameRecord,
    annotation_id_for,
    dump_payload,
    frame_id_for,
    to_frame,
)
from qwen_dataset.release.assemble import BatchExport, ReleaseStaging, assemble_release
from qwen_dataset.release.publish import ReleaseConflictError, list_releases, verify_release
from qwen_dataset.release.splits import split_for_upload
from qwen_dataset.store.blobs import BlobStore

QC = {"geometry": {"iou_mean": 0.9123, "passed": True}, "ocr_accuracy": 0.97}


def upload_id(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def make_frame(store: BlobStore, upload: str, index: int, batch: str, kind: str = "image", **overrides) -> FrameRecord:
    picture = np.full((8, 12, 3), (index * 40) % 256, np.uint8)
    picture[0, 0] = [int(c, 16) for c in (upload[-2:], upload[-4:-2], "7f")]  # distinct pictures per upload
    _, uri = store.put_bytes(encode_picture(picture, "png"))
    values = dict(
        frame_id=frame_id_for(upload, index),
        upload_id=upload,
        batch=batch,
        kind=kind,
        index=index,
        page=index + 1 if kind == "page" else None,
        t=index * 2.0 if kind == "video_frame" else None,
        width=12,
        height=8,
        blob_uri=uri,
        low_light=False,
        mean_luma=90.0,
        enhanced_uri="",
    )
    values.update(overrides)
    return FrameRecord(**values)


def make_annotation(
    frame: FrameRecord,
    task: str = "ocr",
    text: str = "Hello",
    source: str = "ai",
    author: str = "rapidocr-onnxruntime==1.4.4",
    status: str = "ok",
    language: str = "en",
) -> AnnotationRecord:
    if task == "ocr":
        payload = {
            "regions": [
                {
                    "bbox": [1.0, 1.0, 6.0, 5.0],
                    "text": text,
                    "confidence": 0.9,
                    "language": language,
                    "font_style": "regular",
                    "reading_order": 0,
                }
            ]
        }
    else:
        payload = {
            "elements": [{"bbox": [1.0, 1.0, 6.0, 5.0], "role": "button", "text": text}],
            "instruction": "Press it",
            "requested_instruction": "Press it",
            "actions": [],
        }
    return AnnotationRecord(
        annotation_id=annotation_id_for(frame.frame_id, task, source, author),
        frame_id=frame.frame_id,
        upload_id=frame.upload_id,
        batch=frame.batch,
        task=task,
        source=source,
        author=author,
        template_version=f"{task}@1.0",
        created_at="2026-01-01T00:00:00+00:00",
        status=status,
        error="" if status == "ok" else "timeout",
        payload=dump_payload(payload if status == "ok" else {}),
        reviewed=source != "ai",
    )


@pytest.fixture()
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "storage")


def two_batches(store: BlobStore) -> list[BatchExport]:
    """Batch b1: a 6-frame video and 12 screenshots; batch b2: a 3-page PDF, 10 screenshots, one augmented frame."""
    frames_1 = [make_frame(store, upload_id(1), i, "b1", "video_frame") for i in range(6)]
    frames_1 += [make_frame(store, upload_id(100 + n), 0, "b1") for n in range(12)]
    annotations_1 = [make_annotation(f) for f in frames_1]
    annotations_1 += [
        make_annotation(f, task="gui_action", text="提交", source="human", author="annotator-7") for f in frames_1[6:10]
    ]
    annotations_1.append(make_annotation(frames_1[10], source="human", author="annotator-7", status="failed"))
    frames_2 = [make_frame(store, upload_id(2), i, "b2", "page") for i in range(3)]
    frames_2 += [make_frame(store, upload_id(200 + n), 0, "b2") for n in range(10)]
    annotations_2 = [
        make_annotation(f, text="你好", language="zh", source="arbitrated", author="reviewer-1") for f in frames_2
    ]
    source = frames_2[3]
    augmented = make_frame(store, source.upload_id, 0, "b2", frame_id=f"{source.frame_id}~rotate~0")
    augmented_annotation = make_annotation(
        augmented, text="你好", language="zh", source="arbitrated", author="reviewer-1"
    )
    lineage = pd.DataFrame(
        [
            {
                "frame_id": augmented.frame_id,
                "annotation_id": augmented_annotation.annotation_id,
                "source_frame_id": source.frame_id,
                "source_annotation_id": annotations_2[3].annotation_id,
                "upload_id": source.upload_id,
                "batch": "b2",
                "task": "ocr",
                "pipeline": "rotate",
                "seed": 0,
                "sample_seed": 123,
                "augmenter": "albumentations==2.0.8: Affine",
                "params": "{}",
            }
        ]
    )
    return [
        BatchExport("b1", to_frame(frames_1, FrameRecord), to_frame(annotations_1, AnnotationRecord)),
        BatchExport(
            "b2",
            to_frame([*frames_2, augmented], FrameRecord),
            to_frame([*annotations_2, augmented_annotation], AnnotationRecord),
            lineage=lineage,
        ),
    ]


def write_jsonl_per_split(staging: ReleaseStaging) -> None:
    for split in ("train", "val", "test"):
        frames, annotations = staging.split(split)
        lines = [
            json.dumps({"image": staging.image_ref(row.frame_id), "answer": row.payload}, ensure_ascii=False)
            for row in annotations.itertuples(index=False)
        ]
        (staging.directory / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Versions and immutability
# --------------------------------------------------------------------------------------------


def test_same_inputs_give_the_same_version_and_the_existing_release_is_returned(store, tmp_path):
    batches = two_batches(store)
    calls = []

    def formats(staging: ReleaseStaging) -> None:
        calls.append(staging.directory)
        write_jsonl_per_split(staging)

    first = assemble_release(batches, tmp_path / "releases", qc=QC, blobs=store, write_formats=formats)
    shuffled = [
        BatchExport(b.batch, b.frames.sample(frac=1, random_state=3), b.annotations.iloc[::-1], lineage=b.lineage)
        for b in reversed(batches)
    ]
    second = assemble_release(
        shuffled, tmp_path / "releases", qc=dict(reversed(list(QC.items()))), blobs=store, write_formats=formats
    )
    assert first.created and not second.created
    assert len(calls) == 1, "formats are written once, when the release is sealed"
    assert second.version == first.version and len(first.version) == 16 and first.digest.startswith(first.version)
    assert second.path == first.path == tmp_path / "releases" / first.version
    assert second.files == first.files and second.counts == first.counts
    assert list_releases(tmp_path / "releases") == [first.version]
    # Assembled elsewhere from the same inputs: the same version, i.e. it depends on content only.
    elsewhere = assemble_release(
        two_batches(BlobStore(tmp_path / "other")),
        tmp_path / "other_releases",
        qc=QC,
        blobs=BlobStore(tmp_path / "other"),
    )
    assert elsewhere.version == first.version


def test_a_changed_label_or_qc_figure_gives_a_new_version(store, tmp_path):
    batches = two_batches(store)
    base = assemble_release(batches, tmp_path / "r", qc=QC, blobs=store)
    edited = batches[0].annotations.copy()
    edited.loc[0, "payload"] = edited.loc[0, "payload"].replace("Hello", "Hallo")
    changed = assemble_release(
        [BatchExport("b1", batches[0].frames, edited), batches[1]], tmp_path / "r", qc=QC, blobs=store
    )
    other_qc = assemble_release(batches, tmp_path / "r", qc={**QC, "ocr_accuracy": 0.96}, blobs=store)
    other_split = assemble_release(batches, tmp_path / "r", qc=QC, blobs=store, ratios=(0.7, 0.2, 0.1))
    versions = {base.version, changed.version, other_qc.version, other_split.version}
    assert len(versions) == 4
    assert sorted(list_releases(tmp_path / "r")) == sorted(versions)


def test_a_release_is_sealed_read_only_and_its_checksums_hold(store, tmp_path):
    info = assemble_release(two_batches(store), tmp_path / "r", qc=QC, blobs=store, write_formats=write_jsonl_per_split)
    root = info.path
    assert os.stat(root).st_mode & 0o222 == 0
    for name in info.files:
        assert os.stat(root / name).st_mode & 0o222 == 0, name
    assert {
        "frames.parquet",
        "annotations.parquet",
        "augmentation_lineage.parquet",
        "splits.json",
        "README.md",
        "release.json",
        "train.jsonl",
        "val.jsonl",
        "test.jsonl",
    } <= set(info.files)
    recorded = json.loads((root / "release.json").read_text())
    assert set(recorded["files"]) == set(info.files) - {"release.json"}
    assert verify_release(root) == []
    frames = pd.read_parquet(root / "frames.parquet")
    assert len(frames) == 32 and frames["image"].map(lambda p: (root / p).is_file()).all()
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.startswith(".")], "no staging folder is left behind"


def test_pictures_linked_from_their_blobs_are_not_read_again_to_seal_and_copies_are(store, tmp_path, monkeypatch):
    """A picture hard-linked from its content-addressed blob is recorded with the blob's sha256;
    a copy (where links are impossible) and a blob that is a planted link are hashed as they are."""
    from qwen_dataset.release import assemble, publish

    (batch, *_) = two_batches(store)
    copied, planted, linked = (batch.frames.iloc[i] for i in (0, 1, 2))
    # A blob replaced by a link to other bytes is no blob: the export folder's picture is used.
    export_dir = tmp_path / "exports" / "b1"
    (export_dir / "images").mkdir(parents=True)
    exported = export_dir / "images" / f"{planted.frame_id}.png"
    exported.write_bytes(store.read_bytes(planted.blob_uri))
    other_bytes = encode_picture(np.zeros((8, 12, 3), np.uint8), "png")
    (tmp_path / "elsewhere.png").write_bytes(other_bytes)
    blob = store.local_path(planted.blob_uri)
    blob.unlink()
    blob.symlink_to(tmp_path / "elsewhere.png")
    real_link, real_sha256_file = os.link, publish.sha256_file
    hashed: list[str] = []

    def no_link_for_the_copied_frame(source, target, *args, **kwargs):
        if copied.frame_id in str(target):
            raise OSError(18, "Invalid cross-device link")
        return real_link(source, target, *args, **kwargs)

    def counting(path):
        hashed.append(f"{path.parent.name}/{path.name}")
        return real_sha256_file(path)

    monkeypatch.setattr(assemble.os, "link", no_link_for_the_copied_frame)
    monkeypatch.setattr(publish, "sha256_file", counting)
    info = assemble_release(
        [BatchExport("b1", batch.frames, batch.annotations, export_dir=export_dir)], tmp_path / "r", blobs=store
    )
    monkeypatch.undo()
    pictures = sorted(name for name in hashed if name.startswith("images/"))
    assert pictures == sorted(f"images/{frame.frame_id}.png" for frame in (copied, planted))
    recorded = json.loads((info.path / "release.json").read_text())["files"]
    assert recorded[f"images/{linked.frame_id}.png"]["sha256"] == BlobStore.sha256_of(linked.blob_uri)
    assert (info.path / "images" / f"{planted.frame_id}.png").read_bytes() == exported.read_bytes() != other_bytes
    assert verify_release(info.path, checksums=True) == []


def test_a_release_that_changed_under_its_version_is_refused(store, tmp_path):
    batches = two_batches(store)
    info = assemble_release(batches, tmp_path / "r", qc=QC, blobs=store)
    card = info.path / "README.md"
    os.chmod(info.path, 0o755)
    os.chmod(card, 0o644)
    original = card.read_bytes()
    card.write_bytes(original + b"\nedited by hand\n")
    with pytest.raises(ReleaseConflictError, match="README.md has"):
        assemble_release(batches, tmp_path / "r", qc=QC, blobs=store)
    # Same size, other bytes: found when checksums are verified.
    card.write_bytes(original.replace(b"release", b"RELEASE", 1))
    assert assemble_release(batches, tmp_path / "r", qc=QC, blobs=store).version == info.version
    with pytest.raises(ReleaseConflictError, match="sha256"):
        assemble_release(batches, tmp_path / "r", qc=QC, blobs=store, verify_checksums=True)
    card.write_bytes(original)
    (info.path / "extra.txt").write_text("x")
    with pytest.raises(ReleaseConflictError, match="unexpected file extra.txt"):
        assemble_release(batches, tmp_path / "r", qc=QC, blobs=store)


def test_a_foreign_folder_under_the_version_is_never_overwritten(store, tmp_path):
    batches = two_batches(store)
    version = assemble_release(batches, tmp_path / "probe", qc=QC, blobs=store).version
    squatter = tmp_path / "r" / version
    squatter.mkdir(parents=True)
    (squatter / "release.json").write_text(json.dumps({"digest": "0" * 64}))
    with pytest.raises(ReleaseConflictError, match="built from other inputs"):
        assemble_release(batches, tmp_path / "r", qc=QC, blobs=store)
    assert sorted(p.name for p in squatter.iterdir()) == ["release.json"]


def test_a_failing_format_writer_leaves_no_release_behind(store, tmp_path):
    def broken(staging: ReleaseStaging) -> None:
        (staging.directory / "half.jsonl").write_text("{")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError, match="exporter crashed"):
        assemble_release(two_batches(store), tmp_path / "r", qc=QC, blobs=store, write_formats=broken)
    assert list((tmp_path / "r").iterdir()) == []


def test_missing_pictures_and_conflicting_ids_are_clear_errors(store, tmp_path):
    batches = two_batches(store)
    with pytest.raises(ValueError, match="no picture .* no blob store"):
        assemble_release(batches, tmp_path / "r")
    clash = batches[0].frames.copy()
    clash.loc[0, "width"] = 999
    with pytest.raises(ValueError, match="different content"):
        assemble_release(
            [*batches, BatchExport("b1-again", clash, batches[0].annotations)], tmp_path / "r", blobs=store
        )
    orphan = batches[1].annotations.copy()
    with pytest.raises(ValueError, match="missing from the release's frames"):
        assemble_release([BatchExport("b2", batches[0].frames, orphan)], tmp_path / "r", blobs=store)


def test_pictures_come_from_the_batch_export_folder(store, tmp_path):
    (batch, *_) = two_batches(store)
    export_dir = tmp_path / "exports" / "b1"
    for row in batch.frames.itertuples(index=False):
        (export_dir / "images").mkdir(parents=True, exist_ok=True)
        (export_dir / "images" / f"{row.frame_id}.png").write_bytes(store.read_bytes(row.blob_uri))
    info = assemble_release([BatchExport("b1", batch.frames, batch.annotations, export_dir=export_dir)], tmp_path / "r")
    frames = pd.read_parquet(info.path / "frames.parquet")
    for row in frames.itertuples(index=False):
        assert (info.path / row.image).read_bytes() == (export_dir / "images" / f"{row.frame_id}.png").read_bytes()
    assert "exports/b1/" in (info.path / "README.md").read_text()


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def test_splits_are_by_upload_and_disjoint(store, tmp_path):
    info = assemble_release(two_batches(store), tmp_path / "r", blobs=store)
    frames = pd.read_parquet(info.path / "frames.parquet")
    annotations = pd.read_parquet(info.path / "annotations.parquet")
    assert (frames.groupby("upload_id")["split"].nunique() == 1).all()
    assert (annotations.groupby("upload_id")["split"].nunique() == 1).all()
    joined = annotations.merge(frames[["frame_id", "split"]], on="frame_id", suffixes=("", "_frame"))
    assert len(joined) == len(annotations) and (joined["split"] == joined["split_frame"]).all()
    video = frames[frames["upload_id"] == upload_id(1)]
    assert len(video) == 6 and video["split"].nunique() == 1
    augmented = frames[frames["frame_id"].str.contains("~")]
    source = frames[frames["frame_id"] == augmented.iloc[0]["frame_id"].split("~")[0]]
    assert augmented.iloc[0]["split"] == source.iloc[0]["split"]
    splits = json.loads((info.path / "splits.json").read_text())
    uploads = [set(splits[s]["uploads"]) for s in ("train", "val", "test")]
    assert not (uploads[0] & uploads[1] or uploads[0] & uploads[2] or uploads[1] & uploads[2])
    assert sorted(f for s in splits.values() for f in s["frames"]) == sorted(frames["frame_id"])
    assert {s: len(v["frames"]) for s, v in splits.items()} == {
        s: c["frames"] for s, c in info.counts["by_split"].items()
    }


def test_split_ratios_are_honoured_and_stable():
    ids = [upload_id(n) for n in range(2000)]
    splits = [split_for_upload(i) for i in ids]
    shares = {s: splits.count(s) / len(ids) for s in ("train", "val", "test")}
    assert 0.77 < shares["train"] < 0.83 and 0.08 < shares["val"] < 0.12 and 0.08 < shares["test"] < 0.12
    assert splits == [split_for_upload(i) for i in ids]
    assert {split_for_upload(i, (1.0, 0.0, 0.0)) for i in ids[:50]} == {"train"}
    assert {split_for_upload(i, (0.0, 0.0, 1.0)) for i in ids[:50]} == {"test"}
    salted = [split_for_upload(i, salt="v2") for i in ids]
    assert salted != splits
    with pytest.raises(ValueError, match="summing to 1"):
        split_for_upload(ids[0], (0.8, 0.1, 0.2))


# --------------------------------------------------------------------------------------------
# Card
# --------------------------------------------------------------------------------------------


def test_the_card_reports_counts_languages_models_qc_and_lineage(store, tmp_path):
    info = assemble_release(two_batches(store), tmp_path / "r", qc=QC, blobs=store, write_formats=write_jsonl_per_split)
    card = (info.path / "README.md").read_text(encoding="utf-8")
    frames = pd.read_parquet(info.path / "frames.parquet")
    annotations = pd.read_parquet(info.path / "annotations.parquet")
    assert info.version in card and info.digest in card
    # 18 + 14 frames; 18 + 4 + 14 annotations; the failed one is left out and said so.
    assert len(frames) == 32 and len(annotations) == 36
    assert f"| total | {frames['upload_id'].nunique()} | 32 | 36 |" in card
    assert "not part of the release: 1." in card
    for split in ("train", "val", "test"):
        n_frames = int((frames["split"] == split).sum())
        n_ocr = int(((annotations["split"] == split) & (annotations["task"] == "ocr")).sum())
        assert f"| {split} | {frames.loc[frames['split'] == split, 'upload_id'].nunique()} | {n_frames} |" in card
        assert n_ocr == info.counts["by_split"][split]["annotations"] - int(
            ((annotations["split"] == split) & (annotations["task"] == "gui_action")).sum()
        )
    assert "| ocr | 14 | 18 | 0 | 0 |" in card  # language table: 14 Chinese regions, 18 English
    assert "| gui_action | 4 | 0 | 0 | 0 |" in card
    assert "| ocr | rapidocr-onnxruntime==1.4.4 | ocr@1.0 | 18 |" in card
    assert "| gui_action | gui_action@1.0 | 4 |" in card
    assert "| arbitrated | 14 |" in card and "| human | 4 |" in card and "| ai | 18 |" in card
    assert "Human annotators and reviewers: 2 distinct ids" in card and "annotator-7" not in card
    assert "| geometry.iou_mean | 0.9123 |" in card and "| geometry.passed | True |" in card
    assert "| ocr_accuracy | 0.97 |" in card
    assert "| rotate | 1 | 1 |" in card
    assert "| b1 | 18 | 23 | - |" in card and "| b2 | 14 | 14 | - |" in card
    assert "- `train.jsonl`" in card and "- `images/`: 32 pictures" in card
