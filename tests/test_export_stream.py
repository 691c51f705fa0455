"""The exporters' chunked stream: numpy geometry gives exactly what the scalar functions give,
the chunk checker clips and refuses exactly what the box-by-box checker does, orjson writes the
same parsed content as the standard library."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from qwen_dataset import geometry as g
from qwen_dataset.exporters.stream import BoxChecker, ExportAnnotation, dumps, loads


def _annotation(index: int, boxes: list, width: int, height: int, task: str = "ocr") -> ExportAnnotation:
    key = "regions" if task == "ocr" else "objects"
    payload = {key: [{"bbox": box, "text": f"t{n}", "reading_order": len(boxes) - n} for n, box in enumerate(boxes)]}
    return ExportAnnotation(f"a{index}", f"f{index}", "u", task, "ai", "m", "1", "", width, height, payload)


def _random_annotations(seed: int, count: int) -> list[ExportAnnotation]:
    rng = np.random.default_rng(seed)
    annotations = []
    for index in range(count):
        width, height = (int(v) for v in rng.integers(1, 4000, 2))
        boxes = []
        for _ in range(int(rng.integers(0, 6))):
            x1, x2 = sorted(rng.uniform(0, width, 2).tolist())
            y1, y2 = sorted(rng.uniform(0, height, 2).tolist())
            boxes.append([x1, y1, x2 + 1e-6, y2 + 1e-6])
        # Exactly half-way on the 0-1000 scale, the case where rounding rules differ.
        boxes.append([width * 0.0125, height * 0.0025, width * 0.5, height * 0.9995])
        annotations.append(_annotation(index, boxes, width, height))
    return annotations


def test_chunk_geometry_equals_the_scalar_conversions_exactly() -> None:
    annotations = _random_annotations(0, 300)
    BoxChecker().check_chunk(annotations)
    compared = 0
    for annotation in annotations:
        w, h = annotation.width, annotation.height
        boxes = [box.item["bbox"] for box in annotation.box_items()]
        assert annotation.qwen_boxes() == [g.to_qwen_1000(box, w, h) for box in boxes]
        assert annotation.coco_boxes() == [g.to_coco(box) for box in boxes]
        expected = [list(g.to_label_studio(box, w, h).values()) for box in boxes]
        assert annotation.label_studio_boxes() == expected
        assert all(type(value) is int for box in annotation.qwen_boxes() for value in box)
        compared += len(boxes)
    assert compared > 300


def test_chunk_checker_clips_and_records_like_the_box_by_box_checker() -> None:
    boxes = [
        [10.0, 10.0, 50.0, 40.0],  # inside: kept as it is
        [-3.0, 5.0, 120.0, 40.0],  # reaches out: clipped
        [10, 10, 20, 20],  # integers: floats, as clip_box gives
        [150.0, 10.0, 180.0, 20.0],  # outside: empty after clipping, recorded
        [float("nan"), 0.0, 5.0, 5.0],  # not a number: recorded
    ]
    one_by_one, chunked = BoxChecker(), BoxChecker()
    expected = [one_by_one.check(f"a{n}", box, 100, 50) for n, box in enumerate(boxes)]
    annotations = [_annotation(n, [box], 100, 50, task="spatial") for n, box in enumerate(boxes)]
    chunked.check_chunk(annotations)
    got = [annotation.payload["objects"][0]["bbox"] for annotation in annotations]
    assert got[:4] == expected[:4] and np.isnan(got[4][0])
    assert all(type(value) is float for box in got for value in box)
    assert list(chunked.bad) == list(one_by_one.bad) == ["a3", "a4"]
    with pytest.raises(ValueError, match="2 annotation"):
        chunked.raise_if_any()


def test_a_chunk_with_a_malformed_box_is_checked_box_by_box() -> None:
    annotations = [
        _annotation(0, [[0.0, 0.0, 10.0, 10.0]], 100, 100),
        _annotation(1, [[0.0, 0.0, 10.0]], 100, 100),  # three numbers
        _annotation(2, [None], 100, 100),
    ]
    checker = BoxChecker()
    checker.check_chunk(annotations)
    assert annotations[0].payload["regions"][0]["bbox"] == [0.0, 0.0, 10.0, 10.0]
    assert annotations[0].qwen_boxes() == [[0, 0, 100, 100]]
    assert list(checker.bad) == ["a1", "a2"]


def test_chunk_checker_puts_ocr_regions_in_reading_order() -> None:
    annotation = _annotation(0, [[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0], [4.0, 4.0, 5.0, 5.0]], 10, 10)
    BoxChecker().check_chunk([annotation])
    assert [region["text"] for region in annotation.payload["regions"]] == ["t2", "t1", "t0"]
    assert annotation.qwen_boxes() == [[400, 400, 500, 500], [200, 200, 300, 300], [0, 0, 100, 100]]


def test_an_unchecked_annotation_converts_its_boxes_as_stored() -> None:
    # The workbench's editor shows a stored payload: neither clipped nor reordered.
    annotation = _annotation(0, [[5.0, 0.0, 12.0, 10.0], [-2.0, 0.0, 4.0, 5.0]], 10, 10)
    assert annotation.label_studio_boxes() == [[50.0, 0.0, 70.0, 100.0], [-20.0, 0.0, 60.0, 50.0]]
    assert [region["text"] for region in annotation.payload["regions"]] == ["t0", "t1"]


@pytest.mark.parametrize(
    "value",
    [
        {"text": '数据 <image> "q" \\ \n', "n": [1, 2.5, -0.0, 1e16, 123456789.125], "none": None, "b": True},
        [{"k": 1}, [], {}, "", 0.1 + 0.2],
        {1: "integer key"},  # orjson refuses it; the standard library writes it
        {"big": 2**70},
    ],
)
def test_orjson_output_parses_to_what_the_standard_library_writes(value: object) -> None:
    assert json.loads(dumps(value)) == json.loads(json.dumps(value, ensure_ascii=False))
    assert loads(dumps(value)) == json.loads(json.dumps(value))


def test_loads_accepts_what_the_standard_library_wrote_and_orjson_refuses() -> None:
    assert loads('{"x": NaN}')["x"] != loads('{"x": NaN}')["x"]  # NaN, as json.loads gives it
    assert loads("") == {}


# The hand-built fast paths give the bytes of the straightforward code they replace.

_TEXTS = ['数据 <image> "q" \\ \n', "a, b", "<|im_end|>", "\x00\x1f\x7f", "\r", "", "plain", "\u2028"]


def _payload_with_every_shape(task: str, count: int) -> dict:
    key = {"ocr": "regions", "gui_action": "elements", "spatial": "objects"}[task]
    items = []
    for n in range(count):
        item: dict = {"bbox": [0.0, 0.0, 1.0 + n, 1.0], "text": _TEXTS[n % len(_TEXTS)]}
        if n % 3:  # some items lack the label field or the order field
            item.update(role=f"r{n % 2}", label=None if n % 4 else "x", reading_order=(n * 7) % 5)
        items.append(item)
    return {key: items}


@pytest.mark.parametrize("task", ["ocr", "gui_action", "spatial", "image_to_code", "video_event"])
@pytest.mark.parametrize("count", [0, 1, 17, 40])
def test_box_items_lists_what_iter_boxes_walks(task: str, count: int) -> None:
    from qwen_dataset.payloads import box_items, iter_boxes

    if task == "image_to_code":
        payload: dict = {"layout": {"tag": "body", "bbox": [0, 0, 9, 9], "children": [{"bbox": [1, 1, 2, 2]}] * count}}
    elif task == "video_event":
        payload = {"events": [{"start": 0.0, "end": 1.0}] * count}
    else:
        payload = _payload_with_every_shape(task, count)
    assert box_items(task, payload) == list(iter_boxes(task, payload))
    assert box_items(task, {}) == [] and box_items(task, None) == []


def test_put_in_order_sorts_stably_as_the_index_keyed_sort() -> None:
    from qwen_dataset.payloads import put_in_order

    payload = _payload_with_every_shape("ocr", 40)
    reference = json.loads(json.dumps(payload))
    regions = reference["regions"]
    for position, region in enumerate(regions):
        region.setdefault("reading_order", position)
    expected = [regions[i] for i in sorted(range(len(regions)), key=lambda i: (regions[i]["reading_order"], i))]
    assert put_in_order("ocr", payload)["regions"] == expected
    assert put_in_order("ocr", {})["regions"] == []


@pytest.mark.parametrize("box_style", ["json", "compact"])
def test_the_ocr_answer_text_is_the_json_encoder_s(box_style: str) -> None:
    from qwen_dataset.exporters.qwen_jsonl import SampleBuilder, answer_object, dump_answer

    annotations = _random_annotations(1, 40)
    for annotation in annotations:
        for n, region in enumerate(annotation.payload["regions"]):
            region["text"] = _TEXTS[(annotation.width + n) % len(_TEXTS)]
    annotations[3].payload["regions"][0]["text"] = None  # not a string: the encoder's own path
    annotations[4].payload["regions"][0]["text"] = 12.5
    del annotations[5].payload["regions"][0]["text"]
    BoxChecker().check_chunk(annotations)
    builder = SampleBuilder("ocr", pd.DataFrame(), lambda frame_id: frame_id, box_style=box_style)
    for annotation in annotations:
        assert builder.answer(annotation) == dump_answer(answer_object(annotation, box_style))


def test_csv_text_is_what_the_csv_module_writes() -> None:
    import csv
    import io

    from qwen_dataset.exporters.csv_export import csv_text

    cells = [*_TEXTS, None, 0, -3, 2**70, 1.5, 1e16, 0.1 + 0.2, -0.0, float("nan"), True, np.float64(2.5), "x\ny"]
    rng = np.random.default_rng(0)
    columns = [cells, ["same"] * 3, ["a,b"] * 3, [None] * 3, [1.0, 2.0, 3.5], [1, 2, 3], [1, 2.0, None]]
    tables = [[[cells[int(i)] for i in rng.integers(0, len(cells), 6)] for _ in range(50)]]
    tables += [[[column[i % len(column)] for column in columns] for i in range(9)]]
    tables += [[[""], [None], ["x"]], [["a", 1], ["b"]], []]  # a lone cell, rows of two lengths, nothing
    for rows in tables:
        expected = io.StringIO(newline="")
        csv.writer(expected).writerows(rows)
        assert csv_text(rows) == expected.getvalue()


def test_the_trl_table_is_the_one_from_pylist_builds() -> None:
    import pyarrow as pa

    from qwen_dataset.exporters.trl import TRL_SCHEMA, to_trl_record, trl_table

    samples = [
        {
            "image": ["a.png"],
            "conversations": [{"from": "human", "value": "<image>\nRead"}, {"from": "gpt", "value": "[]"}],
        },
        {
            "image": ["b.png", "c.png"],
            "conversations": [
                {"from": "system", "value": "be brief"},
                {"from": "human", "value": "<0.0 seconds><image>\n<1.5 seconds><image>\nWhat happens?"},
                {"from": "gpt", "value": '{"events": []}'},
            ],
        },
        {"conversations": [{"from": "human", "value": "no picture"}, {"from": "gpt", "value": ""}]},
    ]
    records = [to_trl_record(sample, lambda ref: ref.encode() * 3) for sample in samples]
    expected = pa.Table.from_pylist(records, schema=TRL_SCHEMA)
    built = trl_table(records)
    assert built.schema == expected.schema and built.schema.metadata == expected.schema.metadata
    assert built.equals(expected) and built.to_pylist() == records


def test_checked_boxes_are_float_lists_whether_stored_as_floats_or_integers() -> None:
    as_floats = _annotation(0, [[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 9.5, 9.5]], 10, 10)
    as_ints = _annotation(1, [[1, 2, 3, 4], [0, 0, 10, 10]], 10, 10)
    BoxChecker().check_chunk([as_floats])
    BoxChecker().check_chunk([as_ints])
    for annotation in (as_floats, as_ints):
        boxes = [region["bbox"] for region in annotation.payload["regions"]]
        assert all(type(value) is float for box in boxes for value in box)
    assert [region["bbox"] for region in as_ints.payload["regions"]] == [[0.0, 0.0, 10.0, 10.0], [1.0, 2.0, 3.0, 4.0]]
