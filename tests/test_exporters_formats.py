"""Every export format over canonical payloads of all five tasks (built by the real prelabel parser)."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from qwen_dataset.exporters.coco import export_coco
from qwen_dataset.exporters.csv_export import CSV_COLUMNS, export_csv
from qwen_dataset.exporters.label_studio.export import export_label_studio
from qwen_dataset.exporters.messages import export_messages_jsonl
from qwen_dataset.exporters.qwen_jsonl import (
    OCR_PROMPT,
    VIDEO_EVENT_PROMPT,
    export_qwen_jsonl,
    export_qwen_ocr_jsonl,
)
from qwen_dataset.geometry import (
    from_qwen_1000,
    point_from_qwen_1000,
    point_to_qwen_1000,
    to_coco,
    to_qwen_1000,
)
from qwen_dataset.prelabel.templates import (
    TASK_ORDER,
    AnswerContext,
    load_template,
    parse_answer,
)
from qwen_dataset.prelabel.video_events import Boundaries, event_payload
from qwen_dataset.records import (
    AnnotationRecord,
    FrameRecord,
    annotation_id_for,
    dump_payload,
    to_frame,
)
from tests.factories import frame, frames_df

IMAGE = frame(0, width=1920, height=1080)
SMALL = frame(1, width=800, height=1200)
VIDEO_UPLOAD = "a" * 64
VIDEO_FRAMES = [frame(i, width=640, height=360, upload=VIDEO_UPLOAD, kind="video_frame", t=i * 0.5) for i in range(6)]
INSTRUCTION = "Search for AI tutorials"

OCR_ANSWER = {
    "lines": [
        {
            "bbox_2d": [62, 120, 430, 160],
            "text_content": '营业收入, "同比" 增长 12%',
            "language": "zh",
            "font_style": "regular",
            "reading_order": 1,
        },
        {
            "bbox_2d": [62, 40, 512, 88],
            "text_content": "Footer <image> & <|im_end|>\nsecond line",
            "language": "en",
            "font_style": "bold",
            "reading_order": 0,
        },
    ]
}
GUI_ANSWER = {
    "elements": [
        {"bbox_2d": [100, 200, 900, 260], "role": "input", "text": "Search"},
        {"bbox_2d": [700, 300, 900, 360], "role": "button", "text": "Go"},
        {"bbox_2d": [0, 400, 1000, 1000], "role": "list_item", "text": ""},
    ],
    "instruction": "Search for AI tutorials and open the first result",
    "actions": [
        {"type": "click", "target": 0, "point_2d": [500, 230], "end_point_2d": None, "text": None, "direction": None},
        {
            "type": "type",
            "target": 0,
            "point_2d": None,
            "end_point_2d": None,
            "text": 'AI "tutorial" \\ 教程',
            "direction": None,
        },
        {"type": "key", "target": None, "point_2d": None, "end_point_2d": None, "text": "Enter", "direction": None},
        {"type": "wait", "target": None, "point_2d": None, "end_point_2d": None, "text": None, "direction": None},
        {
            "type": "scroll",
            "target": 2,
            "point_2d": [500, 700],
            "end_point_2d": None,
            "text": None,
            "direction": "down",
        },
        {
            "type": "drag",
            "target": None,
            "point_2d": [10, 500],
            "end_point_2d": [990, 500],
            "text": None,
            "direction": None,
        },
        {
            "type": "long_press",
            "target": 2,
            "point_2d": [333, 667],
            "end_point_2d": None,
            "text": None,
            "direction": None,
        },
    ],
}
SPATIAL_SMALL_ANSWER = {
    "objects": [
        {"bbox_2d": [10, 10, 500, 500], "label": "cat", "occluded": False},
        {"bbox_2d": [400, 400, 990, 990], "label": "wooden chair", "occluded": True},
    ],
    "relations": [{"subject": 0, "predicate": "above", "object": 1}],
    "depth_order": [1],
}


def canonical(task: str, record: FrameRecord, answer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The canonical payload the prelabel parser makes of ``answer`` (default: the template example)."""
    template = load_template(task)
    context = AnswerContext(width=record.width, height=record.height, instruction=INSTRUCTION, window_end=60.0)
    return parse_answer(template, json.dumps(answer or template.example), context)


def video_payload() -> dict[str, Any]:
    events = canonical("video_event", VIDEO_FRAMES[0])["events"]
    return event_payload(events, Boundaries(), [f.t for f in VIDEO_FRAMES], [f.frame_id for f in VIDEO_FRAMES])


def record(
    record_frame: FrameRecord,
    task: str,
    payload: dict[str, Any] | None,
    *,
    source: str = "ai",
    author: str = "qwen3-vl",
    created_at: str = "2026-01-01T00:00:00+00:00",
) -> AnnotationRecord:
    return AnnotationRecord(
        annotation_id=annotation_id_for(record_frame.frame_id, task, source, author),
        frame_id=record_frame.frame_id,
        upload_id=record_frame.upload_id,
        batch=record_frame.batch,
        task=task,
        source=source,
        author=author,
        template_version="1.0+abcd1234",
        created_at=created_at,
        status="ok" if payload is not None else "failed",
        error="" if payload is not None else "invalid_json: boom",
        payload=dump_payload(payload) if payload is not None else "",
        reviewed=False,
    )


def canonical_records() -> dict[str, list[AnnotationRecord]]:
    """Final annotations per task, in frame_id order (IMAGE before SMALL)."""
    return {
        "ocr": [record(IMAGE, "ocr", canonical("ocr", IMAGE, OCR_ANSWER)), record(SMALL, "ocr", {"regions": []})],
        "gui_action": [record(IMAGE, "gui_action", canonical("gui_action", IMAGE, GUI_ANSWER))],
        "spatial": [
            record(IMAGE, "spatial", canonical("spatial", IMAGE)),
            record(SMALL, "spatial", canonical("spatial", SMALL, SPATIAL_SMALL_ANSWER)),
        ],
        "image_to_code": [record(IMAGE, "image_to_code", canonical("image_to_code", IMAGE))],
        "video_event": [record(VIDEO_FRAMES[0], "video_event", video_payload())],
    }


def build_manifests() -> tuple[pd.DataFrame, pd.DataFrame]:
    finals = [item for items in canonical_records().values() for item in items]
    others = [
        # Superseded or unusable rows that no dataset may pick up.
        record(
            IMAGE,
            "gui_action",
            canonical("gui_action", IMAGE),
            source="ai",
            author="older-model",
            created_at="2025-01-01T00:00:00+00:00",
        ),
        record(SMALL, "gui_action", None),
        record(SMALL, "image_to_code", None),
    ]
    # The human correction of the GUI annotation beats the AI prelabel of the same frame.
    finals[2] = record(IMAGE, "gui_action", canonical("gui_action", IMAGE, GUI_ANSWER), source="human", author="alice")
    annotations = to_frame(finals + others, AnnotationRecord)
    return annotations, frames_df(IMAGE, SMALL, *VIDEO_FRAMES)


@pytest.fixture(scope="module")
def manifests() -> tuple[pd.DataFrame, pd.DataFrame]:
    return build_manifests()


def image_ref(frame_id: str) -> str:
    return f"images/{frame_id}.png"


def video_ref(upload_id: str) -> str:
    return f"videos/{upload_id}.mp4"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def expected_box(box: list[float], width: int, height: int) -> list[float]:
    """Where a pixel box lands after a trip through Qwen's 0-1000 scale."""
    return from_qwen_1000(to_qwen_1000(box, width, height), width, height)


def expected_point(point: list[float] | None, width: int, height: int) -> list[float] | None:
    return None if point is None else point_from_qwen_1000(point_to_qwen_1000(point, width, height), width, height)


# --------------------------------------------------------------------------------------------
# Qwen-VL fine-tune JSONL


@pytest.mark.parametrize("task", TASK_ORDER)
def test_every_task_follows_the_qwen_vl_finetune_format(tmp_path, manifests, task) -> None:
    out = tmp_path / f"{task}.jsonl"
    expected = len(canonical_records()[task])
    assert export_qwen_jsonl(*manifests, out, image_ref, task=task) == expected
    samples = read_jsonl(out)
    assert len(samples) == expected
    for sample in samples:
        assert set(sample) == {"image", "conversations"}
        images = sample["image"]
        assert isinstance(images, list)  # always a list: files of several tasks load together
        human, gpt = sample["conversations"]
        assert (human["from"], gpt["from"]) == ("human", "gpt")
        assert human["value"].count("<image>") == len(images) >= 1
        assert "<video>" not in human["value"]
        for tag in ("<image>", "<video>", "<|"):
            assert tag not in gpt["value"]
        json.loads(gpt["value"])
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_image_samples_name_the_frame_and_reuse_the_template_prompt(tmp_path, manifests) -> None:
    out = tmp_path / "spatial.jsonl"
    export_qwen_jsonl(*manifests, out, image_ref, task="spatial")
    first, second = read_jsonl(out)
    assert (first["image"], second["image"]) == ([image_ref(IMAGE.frame_id)], [image_ref(SMALL.frame_id)])
    assert first["conversations"][0]["value"] == "<image>\n" + load_template("spatial").render_prompt()


def test_generic_ocr_export_is_the_ocr_export(tmp_path, manifests) -> None:
    export_qwen_jsonl(*manifests, tmp_path / "a.jsonl", image_ref, task="ocr")
    export_qwen_ocr_jsonl(*manifests, tmp_path / "b.jsonl", image_ref)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    first, empty = read_jsonl(tmp_path / "a.jsonl")
    assert first["conversations"][0]["value"] == f"<image>\n{OCR_PROMPT}"
    answer = json.loads(first["conversations"][1]["value"])
    assert [item["text_content"] for item in answer] == [
        "Footer <image> & <|im_end|>\nsecond line",
        '营业收入, "同比" 增长 12%',
    ]  # reading order, tag-like text intact after json.loads
    assert answer[0]["bbox_2d"] == [62, 40, 512, 88]
    assert empty["conversations"][1]["value"] == "[]"


@pytest.mark.parametrize("task", ["gui_action", "spatial", "image_to_code", "video_event"])
def test_answers_read_back_through_the_prelabel_parser(tmp_path, manifests, task) -> None:
    """The answer of a sample is what the prelabel parser accepts and turns into the same payload."""
    out = tmp_path / f"{task}.jsonl"
    export_qwen_jsonl(*manifests, out, image_ref, task=task, video_ref=video_ref)
    template = load_template(task)
    for sample, source in zip(read_jsonl(out), final_records(task), strict=True):
        payload = json.loads(source.payload)
        sized = (
            IMAGE
            if source.frame_id == IMAGE.frame_id
            else SMALL
            if source.frame_id == SMALL.frame_id
            else VIDEO_FRAMES[0]
        )
        context = AnswerContext(width=sized.width, height=sized.height, instruction=INSTRUCTION, window_end=60.0)
        reparsed = parse_answer(template, sample["conversations"][1]["value"], context)
        assert reparsed == expected_after_qwen_scale(task, payload, sized.width, sized.height)


def final_records(task: str) -> list[AnnotationRecord]:
    records = canonical_records()[task]
    if task == "gui_action":
        return [record(IMAGE, "gui_action", canonical("gui_action", IMAGE, GUI_ANSWER), source="human", author="alice")]
    return records


def expected_after_qwen_scale(task: str, payload: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    if task == "gui_action":
        for element in payload["elements"]:
            element["bbox"] = expected_box(element["bbox"], width, height)
        for action in payload["actions"]:
            action["point"] = expected_point(action["point"], width, height)
            action["end_point"] = expected_point(action["end_point"], width, height)
        return payload
    if task == "spatial":
        for item in payload["objects"]:
            item["bbox"] = expected_box(item["bbox"], width, height)
        return payload
    if task == "image_to_code":
        stack = [payload["layout"]]
        while stack:
            node = stack.pop()
            node["bbox"] = expected_box(node["bbox"], width, height)
            stack.extend(node["children"])
        return payload
    return {"events": [{key: event[key] for key in ("start", "end", "description")} for event in payload["events"]]}


def test_compact_box_style_writes_box_tags_on_the_same_scale(tmp_path, manifests) -> None:
    export_qwen_jsonl(*manifests, tmp_path / "json.jsonl", image_ref, task="spatial")
    export_qwen_jsonl(*manifests, tmp_path / "compact.jsonl", image_ref, task="spatial", box_style="compact")
    for plain, compact in zip(read_jsonl(tmp_path / "json.jsonl"), read_jsonl(tmp_path / "compact.jsonl"), strict=True):
        assert plain["conversations"][0] == compact["conversations"][0]
        plain_answer = json.loads(plain["conversations"][1]["value"])
        compact_answer = json.loads(compact["conversations"][1]["value"])
        for plain_object, compact_object in zip(plain_answer["objects"], compact_answer["objects"], strict=True):
            match = re.fullmatch(r"<box>\[(\d+),(\d+),(\d+),(\d+)\]</box>", compact_object["bbox_2d"])
            assert match, compact_object["bbox_2d"]
            assert [int(value) for value in match.groups()] == plain_object["bbox_2d"]
            assert {**compact_object, "bbox_2d": None} == {**plain_object, "bbox_2d": None}
        assert compact_answer["relations"] == plain_answer["relations"]


def test_video_sample_with_the_video_file_has_one_video_tag(tmp_path, manifests) -> None:
    out = tmp_path / "video.jsonl"
    assert export_qwen_jsonl(*manifests, out, image_ref, task="video_event", video_ref=video_ref) == 1
    (sample,) = read_jsonl(out)
    assert set(sample) == {"video", "conversations"}
    assert sample["video"] == [video_ref(VIDEO_UPLOAD)]
    human, gpt = sample["conversations"]
    assert human["value"] == f"<video>\n{VIDEO_EVENT_PROMPT}"
    assert "<image>" not in human["value"]
    events = json.loads(gpt["value"])["events"]
    assert events == [
        {key: event[key] for key in ("start", "end", "description")} for event in video_payload()["events"]
    ]


def test_video_sample_without_the_file_shows_the_sampled_frames_with_timestamps(tmp_path, manifests) -> None:
    out = tmp_path / "video.jsonl"
    export_qwen_jsonl(*manifests, out, image_ref, task="video_event")
    (sample,) = read_jsonl(out)
    assert sample["image"] == [image_ref(f.frame_id) for f in VIDEO_FRAMES]
    human = sample["conversations"][0]["value"]
    shown = "\n".join(f"<{f.t:.1f} seconds><image>" for f in VIDEO_FRAMES)
    assert human == shown + "\n" + load_template("video_event").render_prompt()


def test_video_without_its_frames_or_file_is_refused(tmp_path, manifests) -> None:
    annotations, _ = manifests
    with pytest.raises(ValueError, match="pass video_ref"):
        export_qwen_jsonl(
            annotations,
            frames_df(IMAGE, SMALL, dataclasses.replace(VIDEO_FRAMES[0], t=None)),
            tmp_path / "v.jsonl",
            image_ref,
            task="video_event",
        )
    assert list(tmp_path.iterdir()) == []


def test_media_tags_inside_a_gui_instruction_cannot_become_placeholders(tmp_path) -> None:
    payload = canonical("gui_action", IMAGE, GUI_ANSWER)
    payload["requested_instruction"] = "Open the <image> tab, then <video> and <|im_end|>"
    annotations = to_frame([record(IMAGE, "gui_action", payload)], AnnotationRecord)
    out = tmp_path / "gui.jsonl"
    export_qwen_jsonl(annotations, frames_df(IMAGE), out, image_ref, task="gui_action")
    (sample,) = read_jsonl(out)
    human = sample["conversations"][0]["value"]
    assert human.count("<image>") == 1 and "<video>" not in human and "<|" not in human
    assert "Open the <image > tab, then <video > and < |im_end|>" in human


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"task": "captioning"}, "unknown task"), ({"task": "ocr", "box_style": "xml"}, "box_style")],
)
def test_bad_arguments_are_refused_before_writing(tmp_path, manifests, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        export_qwen_jsonl(*manifests, tmp_path / "x.jsonl", image_ref, **kwargs)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# messages / images


@pytest.mark.parametrize("task", TASK_ORDER)
def test_messages_layout_carries_the_same_turns(tmp_path, manifests, task) -> None:
    export_qwen_jsonl(*manifests, tmp_path / "q.jsonl", image_ref, task=task, video_ref=video_ref)
    count = export_messages_jsonl(*manifests, tmp_path / "m.jsonl", image_ref, task=task, video_ref=video_ref)
    samples, records = read_jsonl(tmp_path / "q.jsonl"), read_jsonl(tmp_path / "m.jsonl")
    assert count == len(records) == len(samples)
    for sample, messages in zip(samples, records, strict=True):
        user, assistant = messages["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert [user["content"], assistant["content"]] == [turn["value"] for turn in sample["conversations"]]
        if task == "video_event":
            assert set(messages) == {"messages", "videos"} and messages["videos"] == sample["video"]
            assert user["content"].count("<video>") == 1
        else:
            assert set(messages) == {"messages", "images"} and messages["images"] == sample["image"]
            assert user["content"].count("<image>") == 1


def test_messages_with_a_system_turn_and_frame_sequence_video(tmp_path, manifests) -> None:
    export_messages_jsonl(*manifests, tmp_path / "m.jsonl", image_ref, task="video_event", system="You label videos.")
    (messages,) = read_jsonl(tmp_path / "m.jsonl")
    assert messages["messages"][0] == {"role": "system", "content": "You label videos."}
    assert messages["images"] == [image_ref(f.frame_id) for f in VIDEO_FRAMES]
    assert messages["messages"][1]["content"].count("<image>") == len(VIDEO_FRAMES)


# --------------------------------------------------------------------------------------------
# COCO


def load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def self_ap(ground_truth: COCO) -> float:
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in ground_truth.dataset["annotations"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


@pytest.mark.parametrize(("task", "boxes"), [("ocr", 2), ("gui_action", 3), ("spatial", 4), ("image_to_code", 4)])
def test_coco_of_every_box_task_loads_and_scores_ap_1(tmp_path, manifests, task, boxes) -> None:
    out = tmp_path / f"{task}.json"
    counts = export_coco(*manifests, out, image_ref, task=task)
    assert counts["annotations"] == boxes and counts["images"] == len(canonical_records()[task])
    ground_truth = load_coco(out)
    assert len(ground_truth.getAnnIds()) == boxes
    assert self_ap(ground_truth) == pytest.approx(1.0)


def test_coco_categories_per_gui_role_and_spatial_label(tmp_path, manifests) -> None:
    export_coco(*manifests, tmp_path / "gui.json", image_ref, task="gui_action")
    gui = json.loads((tmp_path / "gui.json").read_text(encoding="utf-8"))
    roles = load_template("gui_action").schema["properties"]["elements"]["items"]["properties"]["role"]["enum"]
    assert [c["name"] for c in gui["categories"]] == roles  # stable ids: the schema's order
    by_id = {c["id"]: c["name"] for c in gui["categories"]}
    assert [by_id[a["category_id"]] for a in gui["annotations"]] == ["input", "button", "list_item"]
    assert gui["annotations"][0]["attributes"] == {
        "text": "Search",
        "role": "input",
        "element_index": 0,
        "source": "human",
        "annotation_id": annotation_id_for(IMAGE.frame_id, "gui_action", "human", "alice"),
    }
    element_box = canonical("gui_action", IMAGE, GUI_ANSWER)["elements"][0]["bbox"]
    assert gui["annotations"][0]["bbox"] == pytest.approx(to_coco(element_box))

    export_coco(*manifests, tmp_path / "spatial.json", image_ref, task="spatial")
    spatial = json.loads((tmp_path / "spatial.json").read_text(encoding="utf-8"))
    assert [(c["id"], c["name"], c["supercategory"]) for c in spatial["categories"]] == [
        (1, "wooden chair", "object"),
        (2, "dining table", "object"),
        (3, "cat", "object"),
    ]
    chairs = [a for a in spatial["annotations"] if a["category_id"] == 1]
    assert [a["image_id"] for a in chairs] == [1, 2] and chairs[1]["attributes"]["occluded"] is True


def test_coco_layout_blocks_keep_the_tree(tmp_path, manifests) -> None:
    export_coco(*manifests, tmp_path / "code.json", image_ref, task="image_to_code")
    data = json.loads((tmp_path / "code.json").read_text(encoding="utf-8"))
    tree = [
        (a["attributes"]["tag"], a["attributes"]["parent_index"], a["attributes"]["depth"]) for a in data["annotations"]
    ]
    assert tree == [("body", None, 0), ("header", 0, 1), ("h1", 1, 2), ("p", 0, 1)]
    assert data["annotations"][0]["bbox"] == [0.0, 0.0, 1920.0, 1080.0]


def test_coco_refuses_a_task_without_boxes(tmp_path, manifests) -> None:
    with pytest.raises(ValueError, match="no boxes"):
        export_coco(*manifests, tmp_path / "v.json", image_ref, task="video_event")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# CSV


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        return list(reader)


def test_csv_has_one_row_per_item_with_provenance(tmp_path, manifests) -> None:
    out = tmp_path / "items.csv"
    count = export_csv(*manifests, out, image_ref)
    rows = read_csv(out)
    assert count == len(rows)
    kinds = [(row["task"], row["item"]) for row in rows]
    assert kinds.count(("ocr", "region")) == 2 and kinds.count(("ocr", "none")) == 1  # the empty OCR frame
    assert kinds.count(("gui_action", "element")) == 3 and kinds.count(("gui_action", "action")) == 7
    assert kinds.count(("gui_action", "instruction")) == 1
    assert kinds.count(("spatial", "object")) == 4 and kinds.count(("spatial", "relation")) == 4
    assert kinds.count(("image_to_code", "block")) == 4 and kinds.count(("image_to_code", "html")) == 1
    assert kinds.count(("video_event", "event")) == 2
    assert [task for task, _ in kinds] == sorted((task for task, _ in kinds), key=TASK_ORDER.index)
    gui = [row for row in rows if row["task"] == "gui_action"]
    assert {(row["source"], row["author"], row["template_version"]) for row in gui} == {
        ("human", "alice", "1.0+abcd1234")
    }
    assert all(row["created_at"] == "2026-01-01T00:00:00+00:00" and row["upload_id"] == IMAGE.upload_id for row in gui)


def test_csv_cells_keep_exact_pixels_and_texts(tmp_path, manifests) -> None:
    out = tmp_path / "items.csv"
    export_csv(*manifests, out, image_ref, tasks=["ocr", "gui_action", "video_event"])
    rows = read_csv(out)
    regions = [row for row in rows if row["item"] == "region"]
    payload = canonical("ocr", IMAGE, OCR_ANSWER)
    for row, region in zip(regions, payload["regions"], strict=True):
        assert [float(row[c]) for c in ("x1", "y1", "x2", "y2")] == region["bbox"]  # repr floats read back exactly
        assert row["text"] == region["text"] and row["image"] == image_ref(IMAGE.frame_id)
        assert json.loads(row["attributes"])["language"] == region["language"]
    assert regions[0]["text"] == "Footer <image> & <|im_end|>\nsecond line"
    actions = [row for row in rows if row["item"] == "action"]
    assert [row["action_type"] for row in actions] == ["click", "type", "key", "wait", "scroll", "drag", "long_press"]
    assert actions[1]["text"] == 'AI "tutorial" \\ 教程' and actions[1]["target"] == "0"
    assert (actions[4]["direction"], actions[4]["target"]) == ("down", "2")
    drag = canonical("gui_action", IMAGE, GUI_ANSWER)["actions"][5]
    assert [float(actions[5][c]) for c in ("point_x", "point_y", "end_x", "end_y")] == drag["point"] + drag["end_point"]
    events = [row for row in rows if row["item"] == "event"]
    assert [(float(row["start"]), float(row["end"]), row["text"]) for row in events] == [
        (event["start"], event["end"], event["description"]) for event in video_payload()["events"]
    ]
    assert json.loads(events[0]["attributes"])["frame_ids"] == video_payload()["events"][0]["frame_ids"]


def test_csv_audit_view_lists_every_ok_annotation(tmp_path, manifests) -> None:
    out = tmp_path / "audit.csv"
    export_csv(*manifests, out, tasks=["gui_action"], final_only=False)
    authors = {row["author"] for row in read_csv(out)}
    assert authors == {"alice", "older-model"}  # the failed prelabel has no items to show
    assert {row["image"] for row in read_csv(out)} == {""}


def test_csv_refuses_unknown_tasks(tmp_path, manifests) -> None:
    with pytest.raises(ValueError, match="unknown task"):
        export_csv(*manifests, tmp_path / "x.csv", tasks=["ocr", "captions"])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Shared refusals


def broken_gui_manifests() -> tuple[pd.DataFrame, pd.DataFrame]:
    payload = canonical("gui_action", IMAGE, GUI_ANSWER)
    payload["elements"][1]["bbox"] = [1950.0, 10.0, 2100.0, 40.0]  # right of a 1920 px frame
    return to_frame([record(IMAGE, "gui_action", payload)], AnnotationRecord), frames_df(IMAGE)


@pytest.mark.parametrize(
    "export",
    [
        lambda a, f, out: export_qwen_jsonl(a, f, out, image_ref, task="gui_action"),
        lambda a, f, out: export_messages_jsonl(a, f, out, image_ref, task="gui_action"),
        lambda a, f, out: export_coco(a, f, out, image_ref, task="gui_action"),
        lambda a, f, out: export_csv(a, f, out, image_ref),
        lambda a, f, out: export_label_studio(a, f, out, image_ref, task="gui_action"),
    ],
    ids=["qwen", "messages", "coco", "csv", "label_studio"],
)
def test_every_format_refuses_boxes_outside_their_frame_and_leaves_no_file(tmp_path, export) -> None:
    annotations, frames = broken_gui_manifests()
    with pytest.raises(ValueError, match="boxes outside their frame") as caught:
        export(annotations, frames, tmp_path / "out")
    assert annotation_id_for(IMAGE.frame_id, "gui_action", "ai", "qwen3-vl") in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="missing from the frames manifest"):
        export(annotations, frames_df(SMALL), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
