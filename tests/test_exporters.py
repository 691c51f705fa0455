"""Qwen3-VL OCR JSONL and COCO exporters over small hand-built manifests."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from qwen_dataset.exporters.coco import export_coco
from qwen_dataset.exporters.qwen_jsonl import OCR_PROMPT, export_qwen_ocr_jsonl
from qwen_dataset.exporters.stream import final_annotations
from qwen_dataset.geometry import from_qwen_1000
from tests.factories import annotation, annotations_df, frame, frames_df, region

WIDE = frame(0, width=1920, height=1080)
TALL = frame(1, width=800, height=1200)
EMPTY = frame(2, width=640, height=480)
BROKEN = frame(3, width=640, height=480)

WIDE_REGIONS = [
    # Stored out of reading order on purpose: the exporters must sort by reading_order.
    region([1200.5, 40.2, 1830.7, 96.9], text="第二个 second", order=1),
    region([33.3, 41.1, 640.9, 98.4], text="First line", order=0),
    region([35.0, 600.0, 1919.6, 680.0], text="数据标注平台", order=2),
]
TALL_REGIONS = [region([10.0, 1100.0, 790.0, 1199.0], text="Footer <image> & <|im_end|>", order=0)]


def image_ref(frame_id: str) -> str:
    return f"images/{frame_id}.png"


@pytest.fixture
def manifests() -> tuple[pd.DataFrame, pd.DataFrame]:
    annotations = annotations_df(
        annotation(WIDE, WIDE_REGIONS),
        annotation(TALL, TALL_REGIONS),
        annotation(EMPTY, []),
        annotation(BROKEN, [], status="failed"),
        # Another task on the same frame never leaks into an OCR export.
        annotation(WIDE, [region([0, 0, 10, 10], text="button")], task="gui_action"),
    )
    return annotations, frames_df(WIDE, TALL, EMPTY, BROKEN)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


# --------------------------------------------------------------------------------------------
# Qwen3-VL JSONL
# --------------------------------------------------------------------------------------------


def test_jsonl_has_one_sample_per_ok_ocr_frame(tmp_path, manifests) -> None:
    annotations, frames = manifests
    out = tmp_path / "qwen_ocr.jsonl"
    assert export_qwen_ocr_jsonl(annotations, frames, out, image_ref) == 3
    samples = read_jsonl(out)
    assert [sample["image"] for sample in samples] == [[image_ref(f.frame_id)] for f in (WIDE, TALL, EMPTY)]
    assert leftovers(tmp_path, out.name) == []  # the temp file was renamed, nothing else left


def test_jsonl_conversation_shape_and_image_tags(tmp_path, manifests) -> None:
    out = tmp_path / "qwen_ocr.jsonl"
    export_qwen_ocr_jsonl(*manifests, out, image_ref)
    for sample in read_jsonl(out):
        human, gpt = sample["conversations"]
        assert (human["from"], gpt["from"]) == ("human", "gpt")
        assert human["value"] == f"<image>\n{OCR_PROMPT}"
        assert human["value"].count("<image>") == 1
        assert "<image>" not in gpt["value"] and "<|" not in gpt["value"]
        assert isinstance(json.loads(gpt["value"]), list)


def test_jsonl_answer_is_relative_1000_in_reading_order(tmp_path, manifests) -> None:
    out = tmp_path / "qwen_ocr.jsonl"
    export_qwen_ocr_jsonl(*manifests, out, image_ref)
    wide, tall, empty = read_jsonl(out)
    answer = json.loads(wide["conversations"][1]["value"])
    expected = sorted(WIDE_REGIONS, key=lambda r: r["reading_order"])
    assert [item["text_content"] for item in answer] == [r["text"] for r in expected]
    for item, truth in zip(answer, expected):
        assert all(isinstance(v, int) and 0 <= v <= 1000 for v in item["bbox_2d"])
        decoded = from_qwen_1000(item["bbox_2d"], WIDE.width, WIDE.height)
        assert max(abs(a - b) for a, b in zip(decoded, truth["bbox"])) <= 1.0, (decoded, truth["bbox"])
    # The x scale (1920) and y scale (1080) differ: a swapped axis would be caught here.
    assert answer[0]["bbox_2d"] == [17, 38, 334, 91]
    # Tag-like text survives exactly, although the answer string holds no literal tag.
    (footer,) = json.loads(tall["conversations"][1]["value"])
    assert footer["text_content"] == "Footer <image> & <|im_end|>"
    assert footer["bbox_2d"] == [12, 917, 988, 999]
    # A frame whose OCR found no text is still a sample: it teaches "there is no text here".
    assert empty["conversations"][1]["value"] == "[]"


def test_jsonl_prefers_the_reviewed_annotation_of_a_frame(tmp_path) -> None:
    annotations = annotations_df(
        annotation(WIDE, [region([0, 0, 100, 50], text="ai guess")], source="ai"),
        annotation(WIDE, [region([0, 0, 100, 50], text="human fix")], source="human", author="alice"),
        annotation(
            WIDE,
            [region([0, 0, 100, 50], text="older human")],
            source="human",
            author="bob",
            created_at="2025-01-01T00:00:00+00:00",
        ),
    )
    out = tmp_path / "qwen_ocr.jsonl"
    assert export_qwen_ocr_jsonl(annotations, frames_df(WIDE), out, image_ref) == 1
    (sample,) = read_jsonl(out)
    assert json.loads(sample["conversations"][1]["value"])[0]["text_content"] == "human fix"
    assert final_annotations(annotations, "ocr")["author"].tolist() == ["alice"]


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path, manifests) -> None:
    out = tmp_path / "qwen_ocr.jsonl"
    out.write_text("previous export\n", encoding="utf-8")

    def failing_ref(frame_id: str) -> str:
        if frame_id == TALL.frame_id:
            raise KeyError(frame_id)
        return image_ref(frame_id)

    with pytest.raises(KeyError):
        export_qwen_ocr_jsonl(*manifests, out, failing_ref)
    assert out.read_text(encoding="utf-8") == "previous export\n"
    assert leftovers(tmp_path, out.name) == []


def test_annotations_of_unknown_frames_are_refused(tmp_path, manifests) -> None:
    annotations, _ = manifests
    with pytest.raises(ValueError, match="missing from the frames manifest"):
        export_qwen_ocr_jsonl(annotations, frames_df(TALL, EMPTY), tmp_path / "x.jsonl", image_ref)
    assert not (tmp_path / "x.jsonl").exists()


def test_boxes_outside_their_frame_are_refused(tmp_path) -> None:
    outside = annotations_df(annotation(EMPTY, [region([700, 10, 800, 40], text="off the edge")]))
    for export in (export_qwen_ocr_jsonl, export_coco):
        with pytest.raises(ValueError, match="boxes outside their frame"):
            export(outside, frames_df(EMPTY), tmp_path / "out", image_ref)
    assert list(tmp_path.iterdir()) == []


def test_empty_manifests_write_empty_but_valid_files(tmp_path) -> None:
    annotations, frames = annotations_df(), frames_df()
    assert export_qwen_ocr_jsonl(annotations, frames, tmp_path / "q.jsonl", image_ref) == 0
    assert (tmp_path / "q.jsonl").read_text() == ""
    assert export_coco(annotations, frames, tmp_path / "c.json", image_ref) == {
        "images": 0,
        "annotations": 0,
        "categories": 1,
    }
    assert json.loads((tmp_path / "c.json").read_text())["images"] == []


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------


def load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_coco_loads_and_scores_ap_1_against_itself(tmp_path, manifests) -> None:
    out = tmp_path / "coco.json"
    counts = export_coco(*manifests, out, image_ref)
    assert counts == {"images": 3, "annotations": 4, "categories": 1}
    assert leftovers(tmp_path, out.name) == []
    ground_truth = load_coco(out)
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in ground_truth.dataset["annotations"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # AP @ IoU 0.50:0.95
    # The same check catches a misplaced box: shift one detection and AP drops.
    detections[0]["bbox"] = [v + (40 if i < 2 else 0) for i, v in enumerate(detections[0]["bbox"])]
    with contextlib.redirect_stdout(io.StringIO()):
        shifted = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
        shifted.evaluate()
        shifted.accumulate()
        shifted.summarize()
    assert shifted.stats[0] < 1.0


def test_coco_images_boxes_and_attributes(tmp_path, manifests) -> None:
    out = tmp_path / "coco.json"
    export_coco(*manifests, out, image_ref)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["categories"] == [{"id": 1, "name": "text", "supercategory": "ocr"}]
    assert {"info", "licenses", "images", "annotations", "categories"} <= set(data)
    images = {image["frame_id"]: image for image in data["images"]}
    assert set(images) == {WIDE.frame_id, TALL.frame_id, EMPTY.frame_id}  # the failed frame is left out
    assert images[TALL.frame_id] == {
        "id": images[TALL.frame_id]["id"],
        "file_name": image_ref(TALL.frame_id),
        "width": 800,
        "height": 1200,
        "frame_id": TALL.frame_id,
    }
    assert all(isinstance(image["id"], int) for image in data["images"])
    wide = [a for a in data["annotations"] if a["image_id"] == images[WIDE.frame_id]["id"]]
    assert [a["attributes"]["text"] for a in wide] == ["First line", "第二个 second", "数据标注平台"]
    first = wide[0]
    x1, y1, x2, y2 = 33.3, 41.1, 640.9, 98.4
    assert first["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    assert first["area"] == pytest.approx((x2 - x1) * (y2 - y1))
    assert first["segmentation"] == []  # a plain box: no polygon that COCO readers would count twice
    assert first["iscrowd"] == 0 and first["category_id"] == 1
    assert first["attributes"]["language"] == "en" and first["attributes"]["source"] == "ai"
    assert first["attributes"]["annotation_id"] == annotation(WIDE, WIDE_REGIONS).annotation_id
    assert sorted(a["id"] for a in data["annotations"]) == list(range(1, len(data["annotations"]) + 1))
    assert not [a for a in data["annotations"] if a["image_id"] == images[EMPTY.frame_id]["id"]]


def test_batch_export_replaces_changed_pictures_and_drops_stale_files(tmp_path):
    from PIL import Image

    from qwen_dataset.exporters.bundle import write_batch_exports
    from qwen_dataset.records import AnnotationRecord, FrameRecord, to_frame
    from qwen_dataset.store.blobs import BlobStore

    blobs = BlobStore(tmp_path / "root")

    def frame_with(colour, size):
        path = tmp_path / f"{colour}.png"
        Image.new("RGB", size, colour).save(path)
        _, uri = blobs.put_file(path)
        return FrameRecord("f-000000", "u" * 64, "b", "image", 0, None, None, size[0], size[1], uri, False, 100.0, "")

    out = tmp_path / "export"
    first = frame_with("red", (100, 50))
    write_batch_exports(to_frame([], AnnotationRecord), to_frame([first], FrameRecord), blobs, out, str)
    (out / "qwen_spatial.jsonl").write_text("left over from a task that is gone\n")
    (out / "annotations").mkdir()
    (out / "annotations" / "instances_spatial.json").write_text("{}")
    second = frame_with("blue", (200, 100))  # the frame was re-rendered (e.g. another DPI)
    write_batch_exports(to_frame([], AnnotationRecord), to_frame([second], FrameRecord), blobs, out, str)
    with Image.open(out / "images" / "f-000000.png") as picture:
        assert picture.size == (200, 100)
    assert not (out / "qwen_spatial.jsonl").exists() and not (out / "annotations").exists()


def test_a_batch_export_of_video_events_links_the_video_for_label_studio(tmp_path):
    from qwen_dataset.exporters.bundle import write_batch_exports
    from qwen_dataset.exporters.label_studio.media import media_urls
    from qwen_dataset.records import FrameRecord, to_frame
    from qwen_dataset.store.layout import StorageLayout
    from tests.test_workbench_api import AI_EVENTS, write_video_batch

    layout = StorageLayout(tmp_path / "root")
    written = write_video_batch(layout, "b-video", tmp_path / "incoming")
    annotations = pd.read_parquet(layout.manifest("ai_annotations", "b-video"))
    frames = to_frame(written["frames"], FrameRecord)
    out = tmp_path / "export"
    media_url = media_urls(layout.root, "exports/b-video")
    write_batch_exports(annotations, frames, layout.blobs, out, media_url)
    video = out / "videos" / f"{written['upload_id']}.mp4"
    assert video.read_bytes() == written["path"].read_bytes()
    (task,) = json.loads((out / "label_studio_video_event.json").read_text())
    assert task["data"]["video"] == media_url(f"videos/{written['upload_id']}.mp4")
    assert len([r for r in task["predictions"][0]["result"] if r["type"] == "timelinelabels"]) == len(AI_EVENTS)
    # The next export of a batch without the video drops it, as it drops stale pictures.
    write_batch_exports(annotations.iloc[0:0], frames, layout.blobs, out, media_url)
    assert not video.exists()
