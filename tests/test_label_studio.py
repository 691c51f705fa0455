"""Label Studio: configs that match the results, tasks with predictions, and the import back."""

from __future__ import annotations

import copy
import json
import math
import xml.etree.ElementTree as ElementTree
from typing import Any

import pytest

from qwen_dataset.exporters.action_dsl import parse as parse_dsl
from qwen_dataset.exporters.label_studio.config import DEFAULT_FRAME_RATE, LS_TEMPLATE_VERSION, labeling_config
from qwen_dataset.exporters.label_studio.export import export_label_studio, to_label_studio_tasks
from qwen_dataset.exporters.label_studio.importer import from_label_studio_export
from qwen_dataset.geometry import to_label_studio
from qwen_dataset.payloads import TASK_ORDER
from qwen_dataset.records import AnnotationRecord, annotation_id_for, columns_of
from tests.test_exporters_formats import (
    GUI_ANSWER,
    IMAGE,
    OCR_ANSWER,
    SMALL,
    VIDEO_FRAMES,
    VIDEO_UPLOAD,
    build_manifests,
    canonical,
    canonical_records,
    video_payload,
)


def image_url(frame_id: str) -> str:
    return f"https://data.example/frames/{frame_id}.png"


def video_url(upload_id: str) -> str:
    return f"https://data.example/videos/{upload_id}.mp4"


@pytest.fixture(scope="module")
def manifests():
    return build_manifests()


def tasks_for(manifests, task: str) -> list[dict[str, Any]]:
    return to_label_studio_tasks(*manifests, image_url, task=task, video_url=video_url)


def as_submitted(tasks: list[dict[str, Any]], completed_by: Any = 7) -> list[dict[str, Any]]:
    """What Label Studio exports after a reviewer accepted every prediction unchanged."""
    exported = copy.deepcopy(tasks)
    for number, task in enumerate(exported, start=1):
        task["id"] = number
        task["annotations"] = [
            {
                "id": 100 + number,
                "completed_by": completed_by,
                "was_cancelled": False,
                "result": copy.deepcopy(task["predictions"][0]["result"]),
                "updated_at": "2026-02-03T04:05:06.000000Z",
            }
        ]
    return exported


def payloads(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert all(record["status"] == "ok" for record in records), [record["error"] for record in records]
    return [json.loads(record["payload"]) for record in records]


def assert_boxes_close(actual: list[float], expected: list[float]) -> None:
    assert max(abs(a - b) for a, b in zip(actual, expected, strict=True)) < 1e-6, (actual, expected)


# --------------------------------------------------------------------------------------------
# Configs and tasks


def controls_of(config: str) -> tuple[dict[str, tuple[str, str]], set[str], set[str]]:
    """``name -> (result type, toName)`` of the control tags, object tag names, relation labels."""
    root = ElementTree.fromstring(config)
    controls, objects = {}, set()
    for element in root.iter():
        if element.tag in {"Image", "Video"}:
            objects.add(element.get("name"))
        elif element.get("toName"):
            controls[element.get("name")] = (element.tag.lower(), element.get("toName"))
    relations = {element.get("value") for element in root.iter("Relation")}
    return controls, objects, relations


@pytest.mark.parametrize("task", TASK_ORDER)
def test_every_result_matches_a_control_of_the_config(manifests, task) -> None:
    controls, objects, relation_labels = controls_of(labeling_config(task))
    assert objects and all(to_name in objects for _, to_name in controls.values())
    tasks = tasks_for(manifests, task)
    assert len(tasks) == len(canonical_records()[task])
    for ls_task in tasks:
        (prediction,) = ls_task["predictions"]
        assert prediction["model_version"] and "score" in prediction and "result" in prediction
        for result in prediction["result"]:
            if result["type"] == "relation":
                assert set(result["labels"]) <= relation_labels
                continue
            assert (result["type"], result["to_name"]) == controls[result["from_name"]], result
            for labels_key in ("rectanglelabels", "timelinelabels", "choices"):
                if labels_key in result["value"]:
                    options = {
                        e.get("value")
                        for e in ElementTree.fromstring(labeling_config(task)).iter()
                        if e.get("value") and e.tag in {"Label", "Choice"}
                    }
                    assert set(result["value"][labels_key]) <= options


def test_configs_are_well_formed_and_name_their_controls() -> None:
    ocr_controls, _, _ = controls_of(labeling_config("ocr"))
    assert ocr_controls == {
        "bbox": ("rectanglelabels", "image"),
        "transcription": ("textarea", "image"),
        "language": ("textarea", "image"),
        "font_style": ("choices", "image"),
    }
    transcription = ElementTree.fromstring(labeling_config("ocr")).find("TextArea")
    assert transcription.get("perRegion") == "true"
    video = ElementTree.fromstring(labeling_config("video_event", frame_rate=29.97)).find("Video")
    assert video.get("frameRate") == "29.97" and video.get("value") == "$video"
    _, _, relations = controls_of(labeling_config("spatial"))
    assert relations == {
        "left_of",
        "right_of",
        "above",
        "below",
        "inside",
        "overlaps",
        "in_front_of",
        "behind",
        "occludes",
    }
    with pytest.raises(ValueError, match="unknown task"):
        labeling_config("captions")
    with pytest.raises(ValueError, match="frame_rate must be a positive number"):
        labeling_config("video_event", frame_rate=0)


def test_ocr_task_has_percent_rectangles_and_per_region_texts(manifests) -> None:
    first, empty = tasks_for(manifests, "ocr")
    assert first["data"] == {
        "image": image_url(IMAGE.frame_id),
        "frame_id": IMAGE.frame_id,
        "upload_id": IMAGE.upload_id,
        "task": "ocr",
        "annotation_id": canonical_records()["ocr"][0].annotation_id,
    }
    results = first["predictions"][0]["result"]
    regions = canonical("ocr", IMAGE, OCR_ANSWER)["regions"]
    rectangles = [r for r in results if r["type"] == "rectanglelabels"]
    assert [r["id"] for r in rectangles] == ["r0", "r1"]
    for rectangle, region in zip(rectangles, regions, strict=True):
        assert rectangle["value"] == {
            **to_label_studio(region["bbox"], 1920, 1080),
            "rotation": 0,
            "rectanglelabels": ["text"],
        }
        assert (rectangle["original_width"], rectangle["original_height"]) == (1920, 1080)
        (text,) = [r for r in results if r["id"] == rectangle["id"] and r["from_name"] == "transcription"]
        assert text["value"]["text"] == [region["text"]]
    assert empty["predictions"][0]["result"] == []


def test_gui_actions_travel_as_dsl_naming_element_regions(manifests) -> None:
    (ls_task,) = tasks_for(manifests, "gui_action")
    results = ls_task["predictions"][0]["result"]
    (actions,) = [r for r in results if r["from_name"] == "actions"]
    lines = actions["value"]["text"][0].split("\n")
    assert lines[0] == "CLICK #e0 @(960.0,248.4)" and lines[3] == "WAIT"
    assert parse_dsl(actions["value"]["text"][0])[1]["text"] == 'AI "tutorial" \\ 教程'
    assert ls_task["data"]["requested_instruction"] == "Search for AI tutorials"
    assert ls_task["predictions"][0]["model_version"] == "alice@1.0+abcd1234"


def test_spatial_relations_group_predicates_per_object_pair(manifests) -> None:
    first, _ = tasks_for(manifests, "spatial")
    relations = [r for r in first["predictions"][0]["result"] if r["type"] == "relation"]
    assert relations == [
        {
            "from_id": "o0",
            "to_id": "o1",
            "type": "relation",
            "direction": "right",
            "labels": ["left_of", "occludes", "in_front_of"],
        }
    ]


def test_video_events_are_timeline_ranges_in_frames(manifests) -> None:
    (ls_task,) = tasks_for(manifests, "video_event")
    assert ls_task["data"]["video"] == video_url(VIDEO_UPLOAD)
    timeline = [r for r in ls_task["predictions"][0]["result"] if r["type"] == "timelinelabels"]
    assert [r["value"]["ranges"] for r in timeline] == [[{"start": 1, "end": 64}], [{"start": 64, "end": 151}]]
    with pytest.raises(ValueError, match="video_url"):
        to_label_studio_tasks(*manifests, image_url, task="video_event")


def test_export_file_holds_the_same_tasks(tmp_path, manifests) -> None:
    out = tmp_path / "ls.json"
    assert export_label_studio(*manifests, out, image_url, task="spatial") == 2
    assert json.loads(out.read_text(encoding="utf-8")) == tasks_for(manifests, "spatial")
    assert export_label_studio(manifests[0].iloc[0:0], manifests[1], tmp_path / "none.json", image_url) == 0
    assert json.loads((tmp_path / "none.json").read_text()) == []


# --------------------------------------------------------------------------------------------
# Round trips: canonical -> Label Studio -> canonical


def test_ocr_round_trip(manifests) -> None:
    records = from_label_studio_export(as_submitted(tasks_for(manifests, "ocr")), manifests[1])
    first, empty = payloads(records)
    expected = canonical("ocr", IMAGE, OCR_ANSWER)["regions"]
    for region, truth in zip(first["regions"], expected, strict=True):
        assert_boxes_close(region["bbox"], truth["bbox"])
        assert {k: region[k] for k in ("text", "language", "font_style", "reading_order")} == {
            k: truth[k] for k in ("text", "language", "font_style", "reading_order")
        }
    assert empty == {"regions": []}
    record = records[0]
    assert set(record) == set(columns_of(AnnotationRecord))
    where = (record["frame_id"], record["upload_id"], record["batch"], record["task"])
    assert where == (IMAGE.frame_id, IMAGE.upload_id, "b1", "ocr")
    assert (record["source"], record["author"], record["template_version"]) == (
        "human",
        "label-studio:7",
        LS_TEMPLATE_VERSION,
    )
    assert record["created_at"] == "2026-02-03T04:05:06.000000Z"
    assert record["annotation_id"] == annotation_id_for(IMAGE.frame_id, "ocr", "human", "label-studio:7")


def test_gui_round_trip_is_exact_for_actions(manifests) -> None:
    (payload,) = payloads(from_label_studio_export(as_submitted(tasks_for(manifests, "gui_action")), manifests[1]))
    truth = canonical("gui_action", IMAGE, GUI_ANSWER)
    for element, expected in zip(payload["elements"], truth["elements"], strict=True):
        assert_boxes_close(element["bbox"], expected["bbox"])
        assert (element["role"], element["text"]) == (expected["role"], expected["text"])
    assert payload["actions"] == truth["actions"]
    assert (payload["instruction"], payload["requested_instruction"]) == (
        truth["instruction"],
        truth["requested_instruction"],
    )


def test_spatial_round_trip(manifests) -> None:
    imported = payloads(from_label_studio_export(as_submitted(tasks_for(manifests, "spatial")), manifests[1]))
    for payload, source in zip(imported, canonical_records()["spatial"], strict=True):
        truth = json.loads(source.payload)
        for item, expected in zip(payload["objects"], truth["objects"], strict=True):
            assert_boxes_close(item["bbox"], expected["bbox"])
            assert (item["label"], item["occluded"]) == (expected["label"], expected["occluded"])
        assert payload["relations"] == truth["relations"] and payload["depth_order"] == truth["depth_order"]


def test_image_to_code_round_trip_rebuilds_the_tree(manifests) -> None:
    (payload,) = payloads(from_label_studio_export(as_submitted(tasks_for(manifests, "image_to_code")), manifests[1]))
    truth = canonical("image_to_code", IMAGE)
    assert payload["html"] == truth["html"]

    def shape(node: dict[str, Any]) -> tuple:
        return (node["tag"], node["role"], tuple(shape(child) for child in node["children"]))

    assert shape(payload["layout"]) == shape(truth["layout"])
    heading, expected_heading = (
        payload["layout"]["children"][0]["children"][0],
        truth["layout"]["children"][0]["children"][0],
    )
    assert_boxes_close(heading["bbox"], expected_heading["bbox"])


def test_video_round_trip_is_frame_accurate(manifests) -> None:
    (payload,) = payloads(from_label_studio_export(as_submitted(tasks_for(manifests, "video_event")), manifests[1]))
    truth = video_payload()["events"]
    for event, expected in zip(payload["events"], truth, strict=True):
        half_frame = 0.5 / DEFAULT_FRAME_RATE + 1e-9
        assert abs(event["start"] - expected["start"]) <= half_frame
        assert abs(event["end"] - expected["end"]) <= half_frame
        assert event["description"] == expected["description"]
    assert payload["events"][0]["frame_ids"] == [f.frame_id for f in VIDEO_FRAMES if f.t <= payload["events"][0]["end"]]


# --------------------------------------------------------------------------------------------
# Importing what reviewers did


def ocr_export(results: list[dict[str, Any]], **annotation: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "data": {"image": image_url(SMALL.frame_id), "frame_id": SMALL.frame_id, "task": "ocr"},
            "annotations": [
                {"id": 9, "completed_by": {"id": 3, "email": "bob@example.com"}, "result": results, **annotation}
            ],
            "predictions": [],
        }
    ]


def rectangle(region_id: str, x: float, y: float, width: float, height: float, rotation: float = 0) -> dict[str, Any]:
    return {
        "id": region_id,
        "from_name": "bbox",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": 800,
        "original_height": 1200,
        "value": {"x": x, "y": y, "width": width, "height": height, "rotation": rotation, "rectanglelabels": ["text"]},
    }


def transcription(region_id: str, text: str) -> dict[str, Any]:
    return {
        "id": region_id,
        "from_name": "transcription",
        "to_name": "image",
        "type": "textarea",
        "value": {"x": 0, "y": 0, "width": 1, "height": 1, "text": [text]},
    }


def test_reviewer_regions_in_any_order_with_label_studio_ids(manifests) -> None:
    results = [
        transcription("Dx_aB91ISN", "新的一行"),
        rectangle("Dx_aB91ISN", 10, 20, 50, 5),
        rectangle("k2", 0, 0, 10, 10),
    ]
    (record,) = from_label_studio_export(json.dumps(ocr_export(results)), manifests[1])
    assert record["author"] == "label-studio:bob@example.com"
    regions = json.loads(record["payload"])["regions"]
    assert [region["text"] for region in regions] == ["新的一行", ""]
    assert_boxes_close(regions[0]["bbox"], [80.0, 240.0, 480.0, 300.0])
    assert [region["reading_order"] for region in regions] == [0, 1]


COS30, SIN30 = math.cos(math.radians(30)), 0.5


@pytest.mark.parametrize(
    ("rotation", "envelope"),
    [
        (90, [250.0, 300.0, 400.0, 500.0]),
        (30, [400 - 150 * SIN30, 300.0, 400 + 200 * COS30, 300 + 200 * SIN30 + 150 * COS30]),
    ],
)
def test_rotated_rectangle_becomes_its_axis_aligned_envelope(manifests, rotation, envelope) -> None:
    # A 200 x 150 px box at (400, 300), turned clockwise about its top-left corner.
    (record,) = from_label_studio_export(
        ocr_export([rectangle("a", 50, 25, 25, 12.5, rotation=rotation)]), manifests[1]
    )
    (region,) = json.loads(record["payload"])["regions"]
    assert_boxes_close(region["bbox"], envelope)


def test_relation_drawn_right_to_left_keeps_its_meaning(manifests) -> None:
    exported = as_submitted(tasks_for(manifests, "spatial"))
    (relation,) = [r for r in exported[1]["annotations"][0]["result"] if r["type"] == "relation"]
    relation.update({"from_id": relation["to_id"], "to_id": relation["from_id"], "direction": "left"})
    second = payloads(from_label_studio_export(exported, manifests[1]))[1]
    assert second["relations"] == [{"subject": 0, "predicate": "above", "object": 1}]


@pytest.mark.parametrize(
    ("results", "reason"),
    [
        ([rectangle("a", 150, 20, 10, 10)], "outside the 800x1200 frame"),
        ([transcription("ghost", "no box")], "belongs to no 'bbox' region"),
        (
            [{**rectangle("a", 1, 2, 3, 4), "value": {"x": 1, "y": 2, "rectanglelabels": ["text"]}}],
            "not a rectangle value",
        ),
        ([rectangle("a", 1, 2, 3, 4), "not a result object"], "malformed result (AttributeError"),
    ],
)
def test_unusable_annotations_become_failed_records(manifests, results, reason) -> None:
    (record,) = from_label_studio_export(ocr_export(results), manifests[1])
    assert record["status"] == "failed" and record["payload"] == ""
    assert record["error"].startswith("label_studio_import: ") and reason in record["error"]


def test_a_broken_action_line_fails_only_its_annotation(manifests) -> None:
    exported = as_submitted(tasks_for(manifests, "gui_action"))
    good = copy.deepcopy(exported[0]["annotations"][0])
    bad = exported[0]["annotations"][0]
    (actions,) = [r for r in bad["result"] if r["from_name"] == "actions"]
    actions["value"]["text"] = ['CLICK #e0 @(1,2)\nTYPE #e9 "x"']
    good["completed_by"] = 8
    exported[0]["annotations"].append(good)
    failed, ok = from_label_studio_export(exported, manifests[1])
    assert failed["status"] == "failed" and "#e9, which names no element region" in failed["error"]
    assert ok["status"] == "ok" and ok["author"] == "label-studio:8"
    actions["value"]["text"] = ["CLICK #e0 @(1,2)\nPRESS"]
    (failed, _) = from_label_studio_export(exported, manifests[1])
    assert "line 2, column 1: expected an action verb" in failed["error"]


def test_cancelled_annotations_unknown_frames_and_predictions(manifests) -> None:
    exported = as_submitted(tasks_for(manifests, "ocr"))
    exported[0]["annotations"][0]["was_cancelled"] = True
    exported[1]["data"]["frame_id"] = "not-a-frame"
    records = from_label_studio_export(exported, manifests[1])
    assert (
        len(records) == 1 and records[0]["status"] == "failed" and "not in the frames manifest" in records[0]["error"]
    )
    with_predictions = from_label_studio_export(exported, manifests[1], include_predictions=True)
    sources = sorted((r["frame_id"], r["source"], r["author"]) for r in with_predictions)
    assert (IMAGE.frame_id, "ai", "qwen3-vl@1.0+abcd1234") in sources and len(sources) == 3


def test_an_export_file_imports_like_the_parsed_list(tmp_path, manifests) -> None:
    exported = as_submitted(tasks_for(manifests, "spatial"))
    path = tmp_path / "export.json"
    path.write_text(json.dumps(exported, ensure_ascii=False), encoding="utf-8")
    assert from_label_studio_export(path, manifests[1]) == from_label_studio_export(exported, manifests[1])


def test_an_export_that_is_not_json_is_refused(manifests) -> None:
    with pytest.raises(ValueError, match="export the project as JSON"):
        from_label_studio_export("id,image\n1,x.png\n", manifests[1])
