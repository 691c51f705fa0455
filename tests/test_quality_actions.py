"""Action-path completeness: every failure code, focus, confirm/cancel semantics, manifests."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from qwen_dataset.prelabel.templates import AnswerContext, load_template, parse_answer
from qwen_dataset.quality import action_paths as ap
from qwen_dataset.quality.action_paths import (
    action_completeness,
    action_completeness_from_annotations,
    semantic_class,
    simulate_actions,
)
from qwen_dataset.records import dump_payload
from tests import factories

SEARCH = {"bbox": [10, 10, 190, 30], "role": "input", "text": "Search"}
GO = {"bbox": [150, 50, 190, 70], "role": "button", "text": "Go"}
OK = {"bbox": [20, 80, 80, 95], "role": "button", "text": "OK"}
CANCEL = {"bbox": [120, 80, 180, 95], "role": "button", "text": "取消"}
ELEMENTS = [SEARCH, GO, OK, CANCEL]


def click(target, point, **extra):
    return {"type": "click", "target": target, "point": point, **extra}


def run(actions, instruction="", elements=ELEMENTS, width=200, height=100):
    return simulate_actions({"elements": elements, "instruction": instruction, "actions": actions}, width, height)


def test_a_search_sequence_completes():
    result = run(
        [
            click(0, [100, 20]),
            {"type": "type", "target": None, "text": "headphones"},
            click(1, [170, 60]),
            {"type": "key", "text": "Enter"},
        ]
    )
    assert result == ap.PathResult(True)


def test_every_other_action_type_completes_when_well_formed():
    actions = [
        {"type": "scroll", "direction": "down", "point": [100, 50]},
        {"type": "drag", "point": [30, 85], "end_point": [150, 85], "target": 2},
        {"type": "long_press", "target": 2, "point": [50, 90]},
        {"type": "wait"},
        {"type": "type", "target": 0, "text": "typed into its own target"},
    ]
    assert run(actions).completed


def test_the_packaged_template_example_completes():
    # The canonical payload as the prelabel parser produces it from the template's example answer.
    template = load_template("gui_action")
    payload = parse_answer(template, json.dumps(template.example), AnswerContext(width=1280, height=800))
    assert simulate_actions(payload, 1280, 800).completed


@pytest.mark.parametrize(
    ("actions", "code", "step"),
    [
        ([], ap.EMPTY_SEQUENCE, None),
        ([{"type": "swipe", "point": [1, 1]}], ap.UNKNOWN_ACTION, 0),
        ([click(0, [100, 20]), "click OK"], ap.UNKNOWN_ACTION, 1),
        ([{"type": "click", "target": None, "point": None}], ap.INCOMPLETE_ACTION, 0),
        ([{"type": "type", "target": 0, "text": ""}], ap.INCOMPLETE_ACTION, 0),
        ([{"type": "key", "text": None}], ap.INCOMPLETE_ACTION, 0),
        ([{"type": "scroll", "direction": None}], ap.INCOMPLETE_ACTION, 0),
        ([{"type": "drag", "point": [10, 10], "end_point": None}], ap.INCOMPLETE_ACTION, 0),
        ([click(0, "middle")], ap.INCOMPLETE_ACTION, 0),
        ([click(0, [100, 120])], ap.OUT_OF_FRAME_POINT, 0),
        ([click(1, [-1, 60])], ap.OUT_OF_FRAME_POINT, 0),
        ([{"type": "drag", "point": [10, 10], "end_point": [250, 10]}], ap.OUT_OF_FRAME_POINT, 0),
        ([click(9, [100, 20])], ap.MISSING_ELEMENT, 0),
        ([click("Settings", [100, 20])], ap.MISSING_ELEMENT, 0),
        ([click(None, [100, 50])], ap.MISSING_ELEMENT, 0),
        ([{"type": "scroll", "target": 7, "direction": "down"}], ap.MISSING_ELEMENT, 0),
        ([click(1, [100, 20])], ap.POINT_OUTSIDE_ELEMENT, 0),
        ([click(0, [100, 20]), {"type": "type", "target": 1, "text": "x"}], ap.WRONG_ROLE, 1),
        ([click(3, [150, 90], text="OK")], ap.WRONG_ROLE, 0),
        ([click(2, [50, 90], text="Cancel")], ap.WRONG_ROLE, 0),
        ([click(0, [100, 20], text="Password")], ap.TEXT_MISMATCH, 0),
        ([{"type": "type", "target": None, "text": "hello"}], ap.TYPE_WITHOUT_FOCUS, 0),
        ([click(0, [100, 20]), click(1, [170, 60]), {"type": "type", "text": "late"}], ap.TYPE_WITHOUT_FOCUS, 2),
    ],
)
def test_each_failure_code(actions, code, step):
    result = run(actions)
    assert (result.completed, result.code, result.step) == (False, code, step)
    assert result.reason  # says what was wrong


def test_all_failure_codes_are_covered_by_the_table_above():
    covered = {
        ap.EMPTY_SEQUENCE,
        ap.UNKNOWN_ACTION,
        ap.INCOMPLETE_ACTION,
        ap.OUT_OF_FRAME_POINT,
        ap.MISSING_ELEMENT,
        ap.POINT_OUTSIDE_ELEMENT,
        ap.WRONG_ROLE,
        ap.TEXT_MISMATCH,
        ap.TYPE_WITHOUT_FOCUS,
    }
    assert covered == set(ap.FAILURE_CODES)


def test_cancel_button_annotated_as_the_confirm_target_of_the_instruction():
    assert run([click(3, [150, 90])], instruction="Submit the form").code == ap.WRONG_ROLE
    assert run([click(3, [150, 90])], instruction="提交表单").code == ap.WRONG_ROLE
    assert run([click(2, [50, 90])], instruction="提交表单").completed
    # Only the last click carries the task: dismissing a dialog first is fine ...
    assert run([click(3, [150, 90]), click(2, [50, 90])], instruction="Save the settings").completed
    # ... and a cancel instruction legitimately ends on the OK of its confirmation dialog.
    assert run([click(3, [150, 90]), click(2, [50, 90])], instruction="取消订单").completed


def test_text_target_resolves_through_synonyms_and_detects_the_opposite():
    assert run([click("确定", [50, 90])]).completed  # OK means 确定
    assert run([click("Confirm", [150, 90])]).code == ap.WRONG_ROLE  # the point is on 取消
    assert run([click("go", [170, 60])]).completed  # case-insensitive


def test_an_element_without_text_matches_any_expected_text():
    icon = {"bbox": [0, 0, 20, 20], "role": "icon", "text": ""}
    assert run([click(0, [10, 10], text="Settings")], elements=[icon]).completed


def test_point_on_the_edge_is_inside_and_target_without_point_is_enough():
    assert run([click(1, [150, 50])]).completed
    assert run([click(1, None)]).completed


def test_frame_size_unknown_skips_the_frame_check():
    wide = {"bbox": [0, 0, 5000, 5000], "role": "button", "text": "OK"}
    assert simulate_actions({"elements": [wide], "actions": [click(0, [4000, 4000])]}).completed


def test_clicking_elsewhere_takes_the_focus_away():
    actions = [click(0, [100, 20]), click(2, [50, 90]), {"type": "type", "target": None, "text": "x"}]
    assert run(actions).code == ap.TYPE_WITHOUT_FOCUS
    # Scrolling keeps it.
    actions = [click(0, [100, 20]), {"type": "scroll", "direction": "down"}, {"type": "type", "text": "x"}]
    assert run(actions).completed


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("OK", "confirm"),
        ("ＯＫ", "confirm"),
        ("Submit", "confirm"),
        ("确定", "confirm"),
        ("提交", "confirm"),
        ("是", "confirm"),
        ("Cancel", "cancel"),
        ("取消", "cancel"),
        ("No thanks", "cancel"),
        ("不同意", "cancel"),
        ("Don't save", "cancel"),
        ("是否继续", "confirm"),
        ("Notice", None),
        ("是否", None),
        ("确定取消", None),
        ("Search", None),
        ("", None),
    ],
)
def test_confirm_and_cancel_semantics(text, meaning):
    assert semantic_class(text) == meaning


def test_report_counts_completion_and_failures():
    good = {"elements": ELEMENTS, "actions": [click(1, [170, 60])]}
    bad = {"elements": ELEMENTS, "actions": [click(1, [100, 20])]}
    report = action_completeness(
        [(good, 200, 100, "g"), (bad, 200, 100, "b"), (dump_payload(good), 200, 100)], per_sequence=True
    )
    assert (report.sequences, report.completed, report.failures) == (3, 2, {ap.POINT_OUTSIDE_ELEMENT: 1})
    assert report.completeness == pytest.approx(2 / 3)
    assert not report.passes()
    assert report.per_sequence["sequence_id"].tolist() == ["g", "b", "2"]
    assert report.per_sequence.loc[1, "code"] == ap.POINT_OUTSIDE_ELEMENT
    assert report.to_metadata()["failed_point_outside_element"] == 1
    assert action_completeness([]).completeness == 1.0


def _gui(frame, payload, status="ok"):
    record = factories.annotation(frame, [], task="gui_action", status=status)
    return dataclasses.replace(record, payload=dump_payload(payload))


def test_from_annotations_uses_frame_sizes():
    small, large = factories.frame(0, width=200, height=100), factories.frame(1, width=2000, height=1000)
    payload = {
        "elements": [{"bbox": [0, 0, 1000, 500], "role": "button", "text": "OK"}],
        "instruction": "",
        "actions": [click(0, [500, 250])],
    }
    outside = {**payload, "actions": [click(0, [300, 250])]}
    df = factories.annotations_df(_gui(small, outside), _gui(large, payload), _gui(large, payload, status="failed"))
    report = action_completeness_from_annotations(df, factories.frames_df(small, large), per_sequence=True)
    assert (report.sequences, report.completed, report.failures) == (2, 1, {ap.OUT_OF_FRAME_POINT: 1})
    # Without frame sizes the check is skipped and both complete.
    assert action_completeness_from_annotations(df).completed == 2


def test_module_docstring_lists_every_code():
    text = Path(ap.__file__).read_text(encoding="utf-8")
    docstring = text.split('"""')[1]
    assert all(f"``{code}``" in docstring for code in ap.FAILURE_CODES)
