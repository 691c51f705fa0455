"""Prelabel templates: files, schemas, examples, and parsing Qwen3-VL answers into canonical payloads."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from qwen_dataset.geometry import from_qwen_1000
from qwen_dataset.prelabel.templates import (
    TASK_ORDER,
    TEMPLATES_DIR,
    AnswerContext,
    AnswerError,
    TemplateError,
    available_tasks,
    load_template,
    load_templates,
    parse_answer,
    strip_code_fences,
)

WIDE = AnswerContext(width=1920, height=1080, instruction="Open settings")


def answer_error(task: str, answer: object, context: AnswerContext = WIDE) -> AnswerError:
    with pytest.raises(AnswerError) as caught:
        parse_answer(load_template(task), json.dumps(answer), context)
    return caught.value


@pytest.mark.parametrize("task", TASK_ORDER)
def test_every_template_has_a_valid_schema_and_a_valid_example(task: str) -> None:
    template = load_template(task)
    jsonschema.Draft202012Validator.check_schema(template.schema)
    jsonschema.validate(template.example, template.schema)
    assert template.version and template.prompt and template.applies_to
    payload = parse_answer(template, json.dumps(template.example), AnswerContext(1920, 1080, window_end=10.0))
    assert payload


def test_all_five_tasks_ship_and_load_in_run_order() -> None:
    assert available_tasks() == list(TASK_ORDER)
    assert list(load_templates()) == list(TASK_ORDER)
    assert list(load_templates(["video_event", "ocr"])) == ["ocr", "video_event"]


def test_unknown_task_is_refused_with_the_list_of_tasks() -> None:
    with pytest.raises(TemplateError, match="gui_action"):
        load_templates(["ocr", "captioning"])


def test_schemas_stay_within_what_vllm_structured_outputs_enforce() -> None:
    unsupported = {"multipleOf", "uniqueItems", "patternProperties", "format", "contains"}

    def keys(node: object) -> set[str]:
        if isinstance(node, dict):
            return set(node) | set().union(*(keys(value) for value in node.values()))
        if isinstance(node, list):
            return set().union(*(keys(value) for value in node)) if node else set()
        return set()

    for task in TASK_ORDER:
        assert not keys(load_template(task).schema) & unsupported, task


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ('Here you go:\n```json\n{"a": 1}\n```\nDone.', '{"a": 1}'),
        ('```\n{"a": 1}\n```', '{"a": 1}'),
        ('```json\n{"a": 1', '{"a": 1'),
        ('  {"a": 1}  ', '{"a": 1}'),
    ],
)
def test_strip_code_fences(text: str, expected: str) -> None:
    assert strip_code_fences(text) == expected


def test_ocr_converts_relative_boxes_to_pixels_of_a_non_square_frame() -> None:
    answer = {
        "lines": [
            {
                "bbox_2d": [500, 250, 1000, 1000],
                "text_content": "Total 42",
                "language": "en",
                "font_style": "bold",
                "reading_order": 0,
            }
        ]
    }
    payload = parse_answer(load_template("ocr"), f"```json\n{json.dumps(answer)}\n```", WIDE)
    assert payload == {
        "regions": [
            {
                "bbox": [960.0, 270.0, 1920.0, 1080.0],
                "text": "Total 42",
                "confidence": None,
                "language": "en",
                "font_style": "bold",
                "reading_order": 0,
            }
        ]
    }
    portrait = parse_answer(load_template("ocr"), json.dumps(answer), AnswerContext(width=720, height=1280))
    assert portrait["regions"][0]["bbox"] == [360.0, 320.0, 720.0, 1280.0]


def test_ocr_reading_order_is_reranked_and_sorted() -> None:
    line = {"bbox_2d": [0, 0, 10, 10], "language": "en", "font_style": "regular"}
    answer = {
        "lines": [
            {**line, "text_content": "second", "reading_order": 7},
            {**line, "text_content": "first", "reading_order": 3},
        ]
    }
    regions = parse_answer(load_template("ocr"), json.dumps(answer), WIDE)["regions"]
    assert [(region["text"], region["reading_order"]) for region in regions] == [("first", 0), ("second", 1)]


def test_malformed_json_is_invalid_json() -> None:
    with pytest.raises(AnswerError) as caught:
        parse_answer(load_template("ocr"), '{"lines": [{"bbox_2d": [1, 2, 3', WIDE)
    assert caught.value.code == "invalid_json"


@pytest.mark.parametrize(
    ("box", "code"),
    [
        ([0, 0, 1200, 500], "out_of_range"),
        ([-5, 0, 100, 100], "out_of_range"),
        ([500, 0, 400, 100], "out_of_range"),
        ([0, 0, 10], "schema_violation"),
    ],
)
def test_bad_boxes_are_rejected(box: list[int], code: str) -> None:
    answer = {
        "lines": [{"bbox_2d": box, "text_content": "x", "language": "en", "font_style": "regular", "reading_order": 0}]
    }
    assert answer_error("ocr", answer).code == code


def test_labels_outside_the_enums_are_unknown_labels() -> None:
    ocr = {
        "lines": [
            {
                "bbox_2d": [0, 0, 10, 10],
                "text_content": "x",
                "language": "en",
                "font_style": "comic",
                "reading_order": 0,
            }
        ]
    }
    assert answer_error("ocr", ocr).code == "unknown_label"
    gui = copy.deepcopy(load_template("gui_action").example)
    gui["elements"][0]["role"] = "hyperlink-ish"
    assert answer_error("gui_action", gui).code == "unknown_label"
    gui = copy.deepcopy(load_template("gui_action").example)
    gui["actions"][0]["direction"] = "sideways"
    assert answer_error("gui_action", gui).code == "unknown_label"
    spatial = copy.deepcopy(load_template("spatial").example)
    spatial["relations"][0]["predicate"] = "beside"
    assert answer_error("spatial", spatial).code == "unknown_label"


def test_missing_fields_are_schema_violations() -> None:
    answer = {"lines": [{"bbox_2d": [0, 0, 10, 10], "text_content": "x"}]}
    error = answer_error("ocr", answer)
    assert error.code == "schema_violation" and "required" in error.reason


def test_gui_action_points_targets_and_instruction() -> None:
    template = load_template("gui_action")
    payload = parse_answer(template, json.dumps(template.example), WIDE)
    first = payload["actions"][0]
    assert first["type"] == "click" and first["target"] == 0
    assert first["point"] == [960.0, 248.4]
    assert payload["elements"][1]["bbox"] == from_qwen_1000([700, 300, 900, 360], 1920, 1080)
    assert payload["instruction"] == "Search for wireless headphones"
    assert payload["requested_instruction"] == "Open settings"


def test_gui_action_consistency_checks() -> None:
    example = load_template("gui_action").example
    bad_target = copy.deepcopy(example)
    bad_target["actions"][0]["target"] = 5
    assert answer_error("gui_action", bad_target).code == "bad_reference"
    click_without_point = copy.deepcopy(example)
    click_without_point["actions"][0]["point_2d"] = None
    assert answer_error("gui_action", click_without_point).code == "schema_violation"
    point_off_scale = copy.deepcopy(example)
    point_off_scale["actions"][0]["point_2d"] = [500, 1001]
    assert answer_error("gui_action", point_off_scale).code == "out_of_range"


def test_spatial_references_must_point_at_objects() -> None:
    example = load_template("spatial").example
    payload = parse_answer(load_template("spatial"), json.dumps(example), WIDE)
    assert payload["depth_order"] == [0, 1] and payload["objects"][1]["occluded"] is True
    for mutate in (
        lambda answer: answer["relations"][0].update(object=9),
        lambda answer: answer["relations"][0].update(object=0),
        lambda answer: answer.update(depth_order=[0, 0]),
        lambda answer: answer.update(depth_order=[0, 3]),
    ):
        answer = copy.deepcopy(example)
        mutate(answer)
        assert answer_error("spatial", answer).code == "bad_reference"


def test_image_to_code_converts_the_layout_tree() -> None:
    template = load_template("image_to_code")
    payload = parse_answer(template, json.dumps(template.example), WIDE)
    assert payload["html"].startswith("<!DOCTYPE html>")
    assert payload["layout"]["bbox"] == [0.0, 0.0, 1920.0, 1080.0]
    assert payload["layout"]["children"][0]["children"][0]["tag"] == "h1"
    deep = copy.deepcopy(template.example)
    deep["layout"]["children"][0]["children"][0]["bbox_2d"] = [20, 20, 10, 100]
    assert answer_error("image_to_code", deep).code == "out_of_range"


def test_video_event_times_must_lie_in_the_window_shown() -> None:
    context = AnswerContext(width=640, height=360, window_start=4.0, window_end=7.5, window_slack=0.5)
    ok = parse_answer(
        load_template("video_event"),
        json.dumps({"events": [{"start": 3.5, "end": 8.0, "description": " A door opens. "}]}),
        context,
    )
    assert ok == {"events": [{"start": 3.5, "end": 8.0, "description": "A door opens."}]}
    assert (
        answer_error("video_event", {"events": [{"start": 1.0, "end": 5.0, "description": "x"}]}, context).code
        == "out_of_range"
    )
    assert (
        answer_error("video_event", {"events": [{"start": 6.0, "end": 5.0, "description": "x"}]}, context).code
        == "out_of_range"
    )


def copy_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, target)
    return target


def test_an_admin_edit_changes_the_version_tag(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    before = load_template("ocr", folder).version_tag
    prompt = folder / "ocr" / "prompt.txt"
    prompt.write_text(prompt.read_text() + "\nPrefer Simplified Chinese labels.\n")
    after = load_template("ocr", folder)
    assert after.version == "1.0" and after.version_tag != before
    assert "Simplified Chinese" in after.render_prompt()


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        (
            "schema.json",
            '{"type": "object", "properties": {"lines": {"type": "array", "minItems": "one"}}}',
            "not a valid JSON Schema",
        ),
        ("schema.json", "{not json", "not valid JSON"),
        ("example.json", '{"lines": [{"bbox_2d": [0, 0, 10, 10]}]}', "example.json does not pass"),
        ("template.yaml", "task: ocr\nversion: '2'\napplies_to: [photo]\nmax_tokens: 10\n", "applies_to"),
        ("template.yaml", "task: spatial\nversion: '2'\napplies_to: [image]\nmax_tokens: 10\n", "must match"),
    ],
)
def test_broken_template_files_are_refused_naming_the_file(
    tmp_path: Path, file: str, content: str, message: str
) -> None:
    folder = copy_templates(tmp_path)
    (folder / "ocr" / file).write_text(content)
    with pytest.raises(TemplateError, match=message) as caught:
        load_template("ocr", folder)
    assert file in str(caught.value)


def test_an_edited_folder_overrides_only_the_tasks_it_holds(tmp_path: Path) -> None:
    edited = tmp_path / "edited"
    shutil.copytree(TEMPLATES_DIR / "ocr", edited / "ocr")
    (edited / "ocr" / "template.yaml").write_text(
        (edited / "ocr" / "template.yaml").read_text().replace('version: "1.0"', 'version: "1.1"')
    )
    templates = load_templates(directory=edited)
    assert list(templates) == list(TASK_ORDER)
    assert (
        templates["ocr"].version == "1.1" and templates["spatial"].version_tag == load_template("spatial").version_tag
    )


def test_a_missing_template_file_is_named(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "spatial" / "schema.json").unlink()
    with pytest.raises(TemplateError, match="schema.json"):
        load_template("spatial", folder)


def test_gui_prompt_takes_the_instruction() -> None:
    template = load_template("gui_action")
    assert "Book a table for two" in template.render_prompt("Book a table for two")
    assert "$instruction" not in template.render_prompt()
