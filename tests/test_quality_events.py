"""Agreement between two annotators' video events: temporal IoU, one-to-one matching, descriptions."""

from __future__ import annotations

import pytest

from qwen_dataset.quality.event_agreement import (
    event_agreement,
    match_events,
    matched_descriptions,
    temporal_iou,
    text_similarity,
)
from qwen_dataset.workbench.consensus import compare_versions


def ev(start: float, end: float, description: str = "") -> dict:
    return {"start": start, "end": end, "description": description}


def test_temporal_iou():
    assert temporal_iou((0, 2), (0, 2)) == 1.0
    assert temporal_iou((0, 2), (1, 3)) == pytest.approx(1 / 3)
    assert temporal_iou((0, 1), (2, 3)) == 0.0
    assert temporal_iou((0, 4), (1, 2)) == pytest.approx(0.25)  # one inside the other
    assert temporal_iou((1.5, 1.5), (1.5, 1.5)) == 1.0  # the same instant
    assert temporal_iou((1.5, 1.5), (1.0, 2.0)) == 0.0  # an instant has no length to share


def test_matching_is_one_to_one_and_maximises_the_pairs():
    # Best IoU first would pair A0 with B0 (0.95) and leave A1 alone (A1-B1 is 0.05, under 0.1);
    # the matching takes A0-B1 (0.9) and A1-B0 (0.16): two pairs beat one.
    a = [ev(0, 10), ev(0, 1.5)]
    b = [ev(0, 9.5), ev(1, 10)]
    matching = match_events(a, b)
    assert [(p.index_a, p.index_b) for p in matching.pairs] == [(0, 1), (1, 0)]
    assert [round(p.tiou, 3) for p in matching.pairs] == [0.9, 0.158]
    assert matching.unmatched_a == [] and matching.unmatched_b == []
    # Events that barely touch are two events, not one sloppy copy.
    apart = match_events([ev(0, 10)], [ev(9.5, 20)])
    assert apart.pairs == [] and apart.unmatched_a == [0] and apart.unmatched_b == [0]
    assert match_events([], []).pairs == []
    with pytest.raises(ValueError, match="min_tiou"):
        match_events(a, b, min_tiou=0)


def test_text_similarity_ignores_case_punctuation_and_word_order():
    assert text_similarity("A man opens the door.", "the door, a man opens") == 1.0
    assert text_similarity("", "") == 1.0
    assert text_similarity("a red car drives past", "a dog barks") < 0.5
    assert 0.7 < text_similarity("a man opens the door", "the man opens a door slowly") < 1.0


def test_event_agreement_over_videos():
    video_1 = ({"events": [ev(0, 2, "red scene"), ev(3, 4, "green")]}, {"events": [ev(0, 2, "red scene")]})
    video_2 = ({"events": [ev(1, 3, "a dog")]}, {"events": [ev(2, 3, "a dog barks")]})
    empty = ({"events": []}, {"events": []})
    report = event_agreement([video_1, video_2, empty])
    assert (report.videos, report.events_a, report.events_b, report.matched) == (3, 3, 2, 2)
    assert report.mean_tiou == pytest.approx((1.0 + 0.5) / 2)
    assert report.mean_description_similarity == pytest.approx((1.0 + text_similarity("a dog", "a dog barks")) / 2)
    assert (report.unmatched_a, report.unmatched_b) == (1, 0)
    nothing = event_agreement([empty])
    assert nothing.mean_tiou is None and nothing.matched == 0


def test_matched_descriptions_pair_texts_by_time_not_by_position():
    a = {"events": [ev(0, 2, "first thing"), ev(5, 6, "second thing")]}
    b = {"events": [ev(5, 6.2, "the second thing"), ev(0.1, 2, "the first thing")]}
    assert matched_descriptions(a, b) == [("first thing", "the first thing"), ("second thing", "the second thing")]


def test_workbench_agreement_on_events_names_each_difference():
    a = {"events": [ev(0, 2, "a red scene"), ev(3, 4, "green")]}
    assert (
        compare_versions("video_event", a, {"events": [ev(0.1, 2, "A red scene."), ev(3, 4.05, "green")]}, 0.85) == []
    )
    shorter = compare_versions("video_event", a, {"events": [ev(0, 1, "a red scene"), ev(3, 4, "green")]}, 0.85)
    assert shorter == ["event 1 of A (0.00-2.00 s) / 1 of B (0.00-1.00 s): temporal IoU 0.50 is below 0.70"]
    assert (
        compare_versions("video_event", a, {"events": [ev(0, 1, "a red scene"), ev(3, 4, "green")]}, 0.85, min_tiou=0.5)
        == []
    )
    other_words = compare_versions("video_event", a, {"events": [ev(0, 2, "a dog"), ev(3, 4, "green")]}, 0.85)
    assert len(other_words) == 1 and "'a red scene' vs 'a dog'" in other_words[0]
    missing = compare_versions("video_event", a, {"events": [ev(0, 2, "a red scene")]}, 0.85)
    assert missing == ["no counterpart in B for event 2 of A (3.00-4.00 s, 'green')"]
