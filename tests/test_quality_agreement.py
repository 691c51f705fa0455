"""IoU consistency: hand-computed frames, optimality against brute force, manifests."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from qwen_dataset.quality import agreement as ag
from qwen_dataset.quality.agreement import FrameBoxes, agreement, agreement_from_annotations, match_boxes
from qwen_dataset.records import dump_payload
from tests import factories

SQUARE = [0, 0, 10, 10]


def test_identical_frames_agree_perfectly():
    boxes = [SQUARE, [20, 20, 40, 30]]
    report = agreement([(FrameBoxes(boxes, ["a", "b"]), FrameBoxes(boxes, ["a", "b"]))])
    assert (report.matched, report.true_positives, report.label_mismatches) == (2, 2, 0)
    assert report.mean_iou == pytest.approx(1.0)
    assert (report.precision, report.recall, report.f1) == (1.0, 1.0, 1.0)
    assert report.passes()


def test_both_empty_is_perfect_and_adds_nothing():
    report = agreement([(FrameBoxes([], []), FrameBoxes([], []))], per_frame=True)
    assert (report.frames, report.boxes_a, report.boxes_b, report.matched) == (1, 0, 0, 0)
    assert (report.mean_iou, report.precision, report.recall, report.f1) == (1.0, 1.0, 1.0, 1.0)
    assert report.per_frame.loc[0, "mean_iou"] == 1.0
    # An empty frame next to a real one leaves the real figures unchanged.
    real = (FrameBoxes([SQUARE], ["a"]), FrameBoxes([[0, 0, 10, 5]], ["a"]))
    assert agreement([real, (FrameBoxes([]), FrameBoxes([]))]).mean_iou == pytest.approx(agreement([real]).mean_iou)


def test_no_report_at_all_is_perfect():
    report = agreement([])
    assert (report.frames, report.mean_iou, report.f1) == (0, 1.0, 1.0)


def test_one_sided_boxes_score_zero():
    report = agreement([(FrameBoxes([SQUARE, [20, 0, 30, 10]], ["a", "a"]), FrameBoxes([], []))], per_frame=True)
    assert (report.unmatched_a, report.unmatched_b, report.matched) == (2, 0, 0)
    assert (report.mean_iou, report.precision, report.recall, report.f1) == (0.0, 0.0, 0.0, 0.0)
    row = report.per_frame.iloc[0]
    assert (row["boxes_a"], row["unmatched_a"], row["mean_iou"]) == (2, 2, 0.0)


def test_hand_computed_iou_precision_and_recall():
    # A0/B0: IoU 50/100 = 0.5 (a true positive at 0.5); A1/B1: IoU 40/100 = 0.4 (matched, not a TP);
    # A2 has no partner; B2 lies far away from everything.
    boxes_a = [SQUARE, [20, 0, 30, 10], [50, 50, 60, 60]]
    boxes_b = [[0, 0, 10, 5], [20, 0, 30, 4], [100, 100, 110, 110]]
    report = agreement([(FrameBoxes(boxes_a, None), FrameBoxes(boxes_b, None))])
    assert (report.matched, report.unmatched_a, report.unmatched_b, report.true_positives) == (2, 1, 1, 1)
    # The two boxes without a partner count as IoU 0: (0.5 + 0.4) / (2 pairs + 2 unmatched).
    assert report.mean_iou == pytest.approx(0.9 / 4)
    assert report.matched_mean_iou == pytest.approx(0.45)
    assert report.per_frame is None
    assert agreement([(FrameBoxes(boxes_a, None), FrameBoxes(boxes_b, None))], per_frame=True).per_frame.loc[
        0, ["mean_iou", "matched_mean_iou"]
    ].tolist() == pytest.approx([0.225, 0.45])
    assert report.precision == pytest.approx(1 / 3)
    assert report.recall == pytest.approx(1 / 3)
    assert report.f1 == pytest.approx(1 / 3)
    assert not report.passes()


def test_label_mismatch_is_matched_across_labels_and_counted():
    m = match_boxes([SQUARE], ["cat"], [SQUARE], ["dog"])
    assert (m.index_a.tolist(), m.index_b.tolist(), m.same_label.tolist()) == ([0], [0], [False])
    assert m.label_mismatches == 1
    report = agreement([(FrameBoxes([SQUARE], ["cat"]), FrameBoxes([SQUARE], ["dog"]))])
    assert (report.matched, report.label_mismatches, report.true_positives) == (1, 1, 0)
    assert report.mean_iou == pytest.approx(1.0)  # where they drew agrees; what they called it does not
    assert report.label_confusions == {("cat", "dog"): 1}
    assert report.to_metadata()["label_confusions"] == {"cat -> dog": 1}


def test_same_label_pairs_win_over_a_better_cross_label_overlap():
    m = match_boxes([SQUARE], ["cat"], [SQUARE, [0, 0, 10, 6]], ["dog", "cat"])
    assert (m.index_b.tolist(), m.same_label.tolist(), m.unmatched_b.tolist()) == ([1], [True], [0])
    assert m.iou.tolist() == pytest.approx([0.6])


def test_labels_compare_case_and_space_insensitively():
    assert match_boxes([SQUARE], ["Cat "], [SQUARE], ["cat"]).same_label.tolist() == [True]


def test_min_iou_forbids_pairs_that_barely_touch():
    touching = [[9.5, 0, 19.5, 10]]  # IoU 0.5 / 19.5 = 0.026
    assert len(match_boxes([SQUARE], None, touching, None).iou) == 0
    assert len(match_boxes([SQUARE], None, touching, None, min_iou=0.01).iou) == 1
    with pytest.raises(ValueError, match="min_iou"):
        match_boxes([SQUARE], None, touching, None, min_iou=0)


def test_hungarian_beats_greedy_best_pair_first():
    # Greedy would pair A0 with B0 (IoU 0.9) and leave A1 without a partner; the optimum pairs both.
    # A0/B1 overlap 2/18 = 0.11; A1/B1 only 0.5/19.5 = 0.026, under min_iou.
    boxes_a = [[0, 0, 10, 10], [1.5, 0, 11.5, 10]]
    boxes_b = [[0.5, 0, 10.5, 10], [-8, 0, 2, 10]]
    m = match_boxes(boxes_a, None, boxes_b, None, min_iou=0.05)
    assert sorted(zip(m.index_a.tolist(), m.index_b.tolist())) == [(0, 1), (1, 0)]


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        match_boxes([[0, 0, 10]], None, [SQUARE], None)
    with pytest.raises(ValueError, match="one label per box"):
        match_boxes([SQUARE], ["a", "b"], [SQUARE], None)


# --------------------------------------------------------------------------------------------
# Optimality and batching against a brute force


def _brute_force_stage(iou, allowed):
    """Max-cardinality, then max-IoU-sum matching by enumeration (tiny frames only)."""
    rows, cols = allowed.shape
    best = (-1, -1.0, ())
    for size in range(min(rows, cols) + 1):
        for chosen_rows in itertools.combinations(range(rows), size):
            for chosen_cols in itertools.permutations(range(cols), size):
                pairs = tuple(zip(chosen_rows, chosen_cols))
                if all(allowed[r, c] for r, c in pairs):
                    total = sum(iou[r, c] for r, c in pairs)
                    if (size, total) > best[:2]:
                        best = (size, total, pairs)
    return best[2]


def _brute_force(boxes_a, labels_a, boxes_b, labels_b, min_iou):
    from qwen_dataset.geometry import iou_matrix

    iou = iou_matrix(boxes_a, boxes_b)
    equal = np.array(labels_a)[:, None] == np.array(labels_b)[None, :]
    first = _brute_force_stage(iou, (iou >= min_iou) & equal)
    used_rows = {r for r, _ in first}
    used_cols = {c for _, c in first}
    left = (iou >= min_iou).copy()
    left[list(used_rows), :] = False
    left[:, list(used_cols)] = False
    second = _brute_force_stage(iou, left)
    return len(first), len(second), sum(iou[r, c] for r, c in first + second)


def _random_frame(rng, count):
    # Boxes crowd into a small area so that rows compete for columns (the Hungarian fallback runs).
    corners = rng.uniform(0, 20, size=(count, 2))
    sizes = rng.uniform(5, 15, size=(count, 2))
    labels = rng.choice(["a", "b"], size=count).tolist()
    return np.hstack([corners, corners + sizes]), labels


def test_batched_matching_is_optimal_against_brute_force(monkeypatch):
    calls = []
    original = ag._hungarian
    monkeypatch.setattr(ag, "_hungarian", lambda score: calls.append(1) or original(score))
    rng = np.random.default_rng(7)
    pairs = []
    for _ in range(150):
        pairs.append(
            (
                FrameBoxes(*_random_frame(rng, int(rng.integers(0, 5)))),
                FrameBoxes(*_random_frame(rng, int(rng.integers(0, 5)))),
            )
        )
    matchings = ag.match_frames(pairs, min_iou=0.1)
    assert calls, "the random frames should exercise the Hungarian fallback too"
    for (side_a, side_b), m in zip(pairs, matchings):
        if not len(side_a.boxes) or not len(side_b.boxes):
            assert len(m.iou) == 0
            continue
        same, crossed, total = _brute_force(side_a.boxes, side_a.labels, side_b.boxes, side_b.labels, 0.1)
        assert (int(m.same_label.sum()), m.label_mismatches) == (same, crossed)
        assert m.iou.sum() == pytest.approx(total)

    # The aggregate report sums the same matchings.
    report = agreement(pairs, min_iou=0.1)
    assert report.matched == sum(len(m.iou) for m in matchings)
    assert report.label_mismatches == sum(m.label_mismatches for m in matchings)
    unmatched = sum(len(m.unmatched_a) + len(m.unmatched_b) for m in matchings)
    assert report.mean_iou == pytest.approx(sum(m.iou.sum() for m in matchings) / (report.matched + unmatched))
    assert report.matched_mean_iou == pytest.approx(sum(m.iou.sum() for m in matchings) / report.matched)
    assert report.true_positives == sum(int((m.same_label & (m.iou >= 0.5)).sum()) for m in matchings)


def test_chunking_gives_the_same_answer(monkeypatch):
    rng = np.random.default_rng(3)
    pairs = [(FrameBoxes(*_random_frame(rng, 3)), FrameBoxes(*_random_frame(rng, 3))) for _ in range(40)]
    whole = agreement(pairs)
    monkeypatch.setattr(ag, "_CHUNK_FRAMES", 7)
    assert agreement(pairs) == whole


# --------------------------------------------------------------------------------------------
# From annotation manifests


def _spatial(frame, author, objects, created_at, source="human"):
    record = factories.annotation(frame, [], source=source, author=author, task="spatial", created_at=created_at)
    payload = {
        "objects": [{"bbox": b, "label": label, "occluded": False} for b, label in objects],
        "relations": [],
        "depth_order": [],
    }
    return dataclasses.replace(record, payload=dump_payload(payload))


def test_agreement_from_annotations_pairs_authors_of_the_same_frame():
    f1, f2 = factories.frame(0), factories.frame(1)
    df = factories.annotations_df(
        _spatial(f1, "bob", [([0, 0, 10, 5], "cup")], "2026-01-02T00:00:00+00:00"),
        _spatial(f1, "alice", [(SQUARE, "cup")], "2026-01-01T00:00:00+00:00"),
        _spatial(f1, "qwen3-vl", [(SQUARE, "mug")], "2026-01-01T00:00:00+00:00", source="ai"),
        _spatial(f2, "alice", [(SQUARE, "cup")], "2026-01-01T00:00:00+00:00"),  # single-annotated: no pair
    )
    pairs = ag.pair_annotations(df, "spatial")
    assert pairs[["frame_id", "author_a", "author_b"]].values.tolist() == [[f1.frame_id, "alice", "bob"]]
    report = agreement_from_annotations(df, "spatial", per_frame=True)
    assert (report.frames, report.matched, report.recall) == (1, 1, 1.0)
    assert report.mean_iou == pytest.approx(0.5)
    assert report.per_frame[["frame_id", "author_a", "author_b"]].values.tolist() == [[f1.frame_id, "alice", "bob"]]
    # With every source, the AI row pairs with both people and brings its label mismatch along.
    everyone = agreement_from_annotations(df, "spatial", sources=None)
    assert (everyone.frames, everyone.label_mismatches) == (3, 2)


def test_one_box_without_a_partner_is_disagreement():
    """Nine identical boxes and a tenth that only one annotator drew: 0.9, not a perfect 1.0."""
    boxes = [[10.0 * i, 0, 10.0 * i + 8, 8] for i in range(10)]
    report = agreement([(FrameBoxes(boxes, None), FrameBoxes(boxes[:9], None))])
    assert (report.mean_iou, report.matched_mean_iou) == (pytest.approx(0.9), pytest.approx(1.0))
    assert ag.units(report) == 10


def test_latest_row_of_an_author_counts():
    f1 = factories.frame(0)
    df = factories.annotations_df(
        _spatial(f1, "alice", [([50, 50, 60, 60], "cup")], "2026-01-01T00:00:00+00:00"),
        _spatial(f1, "alice", [(SQUARE, "cup")], "2026-01-03T00:00:00+00:00"),
        _spatial(f1, "bob", [(SQUARE, "cup")], "2026-01-02T00:00:00+00:00"),
    )
    report = agreement_from_annotations(df, "spatial")
    assert report.mean_iou == pytest.approx(1.0)


def test_boxes_of_each_task_payload():
    ocr = ag.frame_boxes_from_payload("ocr", {"regions": [factories.region(SQUARE)]})
    assert (ocr.boxes, ocr.labels) == ([SQUARE], ["text"])
    gui = ag.frame_boxes_from_payload(
        "gui_action", dump_payload({"elements": [{"bbox": SQUARE, "role": "button", "text": "OK"}], "actions": []})
    )
    assert gui.labels == ["button"]
    layout = {
        "tag": "body",
        "role": "page",
        "bbox": [0, 0, 100, 100],
        "children": [{"tag": "h1", "role": "heading", "bbox": SQUARE, "children": []}],
    }
    code = ag.frame_boxes_from_payload("image_to_code", {"html": "<p>", "layout": layout})
    assert (len(code.boxes), code.labels) == (2, ["page", "heading"])
    with pytest.raises(ValueError, match="video_event"):
        ag.frame_boxes_from_payload("video_event", {"events": []})


def test_manifest_without_annotation_columns_is_refused():
    import pandas as pd

    with pytest.raises(ValueError, match="AnnotationRecord"):
        agreement_from_annotations(pd.DataFrame({"frame_id": ["x"]}), "spatial")


def test_iou_matrix_batches_over_a_leading_frame_axis():
    from qwen_dataset.geometry import iou_matrix

    rng = np.random.default_rng(5)
    corners = rng.uniform(0, 50, size=(6, 4, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 30, size=(6, 4, 2))], axis=2)
    batched = iou_matrix(boxes[:, :3], boxes[:, 1:])
    assert batched.shape == (6, 3, 3)
    for frame in range(6):
        np.testing.assert_allclose(batched[frame], iou_matrix(boxes[frame, :3], boxes[frame, 1:]))
