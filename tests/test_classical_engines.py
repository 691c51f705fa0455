"""The classical engines of the default backend, on pictures drawn here with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from qwen_dataset.payloads import SPATIAL_PREDICATES, validate_payload
from qwen_dataset.prelabel.base import FrameInput, PrelabelOutcome
from qwen_dataset.prelabel.classical import gui, layout_code, spatial, video
from qwen_dataset.prelabel.classical.backend import ClassicalBackend
from qwen_dataset.prelabel.video_events import Boundaries
from qwen_dataset.quality.action_paths import simulate_actions


def bgr_of(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


@pytest.fixture()
def form() -> tuple[np.ndarray, list[dict]]:
    """A login form: a label over an input, two buttons (confirm, cancel), a blue link, a title."""
    image = Image.new("RGB", (640, 400), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 639, 39), fill=(33, 37, 41))
    draw.rounded_rectangle((40, 110, 400, 150), radius=6, fill=(255, 255, 255), outline=(120, 120, 120), width=2)
    draw.rounded_rectangle((40, 200, 200, 244), radius=8, fill=(0, 92, 197))
    draw.rounded_rectangle((240, 200, 400, 244), radius=8, fill=(242, 244, 247), outline=(120, 120, 120), width=2)
    for x in range(42, 140, 9):  # the link's "letters": blue strokes, no closed outline
        draw.line((x, 300, x + 4, 316), fill=(0, 70, 220), width=2)
    regions = [
        {"bbox": [12.0, 10.0, 120.0, 30.0], "text": "Acme Portal"},
        {"bbox": [40.0, 80.0, 140.0, 100.0], "text": "Username"},
        {"bbox": [54.0, 120.0, 150.0, 140.0], "text": "li.na"},
        {"bbox": [90.0, 212.0, 150.0, 232.0], "text": "提交"},
        {"bbox": [290.0, 212.0, 350.0, 232.0], "text": "取消"},
        {"bbox": [40.0, 298.0, 140.0, 318.0], "text": "Forgot password?"},
        {"bbox": [40.0, 350.0, 600.0, 370.0], "text": "Body copy that labels nothing."},
    ]
    return bgr_of(image), regions


def roles(elements: list[dict]) -> dict[str, str]:
    return {element["text"]: element["role"] for element in elements}


def test_gui_elements_from_outlines_and_lines(form) -> None:
    bgr, regions = form
    elements = gui.detect_elements(bgr, regions)
    assert roles(elements) == {
        "Acme Portal": "text",
        "Username": "text",
        "li.na": "input",
        "提交": "button",
        "取消": "button",
        "Forgot password?": "link",
    }
    button = next(element for element in elements if element["text"] == "提交")
    assert button["bbox"] == pytest.approx([40, 200, 201, 245], abs=2)


def test_gui_instruction_picks_its_target_and_never_the_opposite_word(form) -> None:
    bgr, regions = form
    payload = gui.gui_payload(bgr, regions, "请提交表单")
    validate_payload("gui_action", payload)
    target = payload["elements"][payload["actions"][0]["target"]]
    assert (target["text"], payload["actions"][0]["type"]) == ("提交", "click")
    assert simulate_actions(payload, 640, 400).completed
    # "不同意" (disagree) holds the letters of "同意" (agree), a perfect fuzzy match: its meaning rules it out.
    agree = [{"bbox": [0, 0, 50, 20], "role": "button", "text": "同意"}]
    assert gui.find_target("不同意", agree) is None and gui.find_target("同意", agree) == 0


def test_gui_types_a_quoted_text_into_an_input(form) -> None:
    bgr, regions = form
    payload = gui.gui_payload(bgr, regions, 'type "zhang.wei" into li.na')
    action = payload["actions"][0]
    assert (action["type"], action["text"], payload["elements"][action["target"]]["role"]) == (
        "type",
        "zhang.wei",
        "input",
    )


def test_gui_without_instruction_proposes_the_confirm_button_or_a_scroll(form) -> None:
    bgr, regions = form
    payload = gui.gui_payload(bgr, regions, None)
    assert payload["elements"][payload["actions"][0]["target"]]["text"] == "提交"
    blank = gui.gui_payload(np.full((200, 300, 3), 255, np.uint8), [], None)
    assert blank["actions"] == [{"type": "scroll", "direction": "down"}] and simulate_actions(blank, 300, 200).completed
    unmatched = gui.gui_payload(bgr, regions, "Open the settings")
    assert unmatched["actions"] == [] and "no element" in unmatched["unresolved"]


def test_xy_cut_makes_rows_and_columns_and_html_draws_them(form) -> None:
    bgr, regions = form
    items = [
        {"bbox": [10, 10, 100, 30], "text": "A"},
        {"bbox": [200, 10, 300, 30], "text": "B"},
        {"bbox": [10, 100, 300, 130], "role": "button", "text": "C"},
    ]
    tree = layout_code.layout_tree(items, 400, 200)
    assert tree["role"] == "page" and [child["tag"] for child in tree["children"]] == ["div", "button"]
    first_row = tree["children"][0]
    assert [child["text"] for child in first_row["children"]] == ["A", "B"]
    payload = layout_code.code_payload(bgr, gui.detect_elements(bgr, regions), regions)
    validate_payload("image_to_code", payload)
    assert "Forgot password?" in payload["html"] and "<script" not in payload["html"]
    assert payload["layout"]["bbox"] == [0.0, 0.0, 640.0, 400.0]


def test_spatial_relations_depth_and_occlusion_from_boxes() -> None:
    boxes = [[0, 100, 100, 200], [300, 100, 500, 300], [350, 150, 400, 200], [80, 150, 160, 260]]
    relations = {(r["subject"], r["predicate"], r["object"]) for r in spatial.spatial_relations(boxes)}
    assert (0, "left_of", 1) in relations and (2, "inside", 1) in relations
    assert (0, "overlaps", 3) in relations and (3, "occludes", 0) in relations  # 3 stands lower: nearer
    assert (1, "inside", 2) not in relations and all(p in SPATIAL_PREDICATES for _, p, _ in relations)
    order = spatial.depth_order(boxes)
    assert order.index(2) < order.index(1)  # a thing inside another is in front of it


def test_fill_relations_keeps_what_a_person_set() -> None:
    payload = {
        "objects": [{"bbox": [0, 0, 10, 10], "label": "a"}, {"bbox": [50, 0, 60, 10], "label": "b"}],
        "relations": [{"subject": 1, "predicate": "right_of", "object": 0}],
    }
    filled = spatial.fill_relations(payload)
    assert filled["relations"] == payload["relations"]  # the pair is related already: left alone
    fresh = spatial.fill_relations({"objects": payload["objects"]})
    assert fresh["relations"] == [{"subject": 0, "predicate": "left_of", "object": 1}]
    validate_payload("spatial", fresh)


def test_object_proposals_are_the_coloured_regions() -> None:
    image = Image.new("RGB", (400, 300), (236, 234, 228))
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 119, 119), fill=(200, 40, 40))
    draw.ellipse((200, 100, 299, 199), fill=(40, 70, 200))
    objects = spatial.propose_objects(np.asarray(image))
    assert sorted((o["label"], o["bbox"]) for o in objects) == [
        ("blue object", [200.0, 100.0, 300.0, 200.0]),
        ("red object", [20.0, 20.0, 120.0, 120.0]),
    ]


def test_video_segments_between_boundaries_with_seeded_descriptions(tmp_path: Path) -> None:
    assert video.segments([2.0, 4.0], 6.0) == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    assert video.segments([0.2, 3.0, 5.8], 6.0) == [(0.0, 3.0), (3.0, 6.0)]  # slivers join a neighbour
    frames = [FrameInput(f"f{i}", "v", "b", 8, 8, tmp_path / f"{i}.png", t=float(i), duration=6.0) for i in range(6)]
    payload = video.event_payload_from_segments(
        frames, Boundaries(cuts=(2.0, 4.0), source="sampled_frames"), 6.0, lambda frame: [f"text {frame.frame_id}"]
    )
    validate_payload("video_event", payload)
    events = payload["events"]
    assert [(e["start"], e["end"], e["keyframe"]) for e in events] == [(0, 2, "f1"), (2, 4, "f3"), (4, 6, "f5")]
    assert all(e["needs_description"] for e in events)
    assert events[1]["description"] == "Segment 2 of 3. On screen: text f3"


class CountingOcr:
    """An OCR engine stand-in that reads fixed lines and counts what it was asked to read."""

    author = "fake-ocr==1"
    version = "fake-ocr==1;v"

    def __init__(self, regions: list[dict]) -> None:
        self.regions = regions
        self.read: list[str] = []

    def annotate(self, frames, task):
        for frame in frames:
            self.read.append(frame.frame_id)
            yield PrelabelOutcome(frame.frame_id, task, {"regions": list(self.regions)})


def test_backend_reads_each_frame_once_per_run_and_versions_its_instructions(form, tmp_path: Path) -> None:
    bgr, regions = form
    path = tmp_path / "form.png"
    Image.fromarray(bgr[:, :, ::-1]).save(path)
    frame = FrameInput("f", "u", "b", 640, 400, path)
    ocr = CountingOcr(regions)
    base = ClassicalBackend(ocr)  # type: ignore[arg-type]
    backend = base.with_run_options(instructions={"u": "取消"})
    for task in ("ocr", "gui_action", "image_to_code"):
        (outcome,) = backend.annotate([frame], task)
        validate_payload(task, outcome.payload)
    assert ocr.read == ["f"]
    gui_outcome = next(iter(backend.annotate([frame], "gui_action")))
    assert gui_outcome.payload["requested_instruction"] == "取消"
    assert backend.version != base.version and backend.author == "fake-ocr==1+classical-cv"
    broken = FrameInput("g", "u", "b", 640, 400, tmp_path / "missing.png")
    (failure,) = backend.annotate([broken], "spatial")
    assert failure.payload is None and "could not read image" in failure.error


def test_evaluation_reads_inverse_and_symmetric_relations_as_the_same_fact() -> None:
    from qwen_dataset.samples.evaluate import _stated

    stated = _stated(
        {
            "relations": [
                {"subject": 1, "predicate": "right_of", "object": 0},
                {"subject": 3, "predicate": "overlaps", "object": 2},
            ]
        }
    )
    assert {(0, "left_of", 1), (2, "overlaps", 3), (3, "overlaps", 2)} <= stated
    assert (1, "left_of", 0) not in stated
