"""Agreement between two annotators' video events: temporal IoU per matched event, and descriptions.

Definition (beside the box agreement of :mod:`qwen_dataset.quality.agreement`):

* **Temporal IoU** of two events = length of the intersection of their ``[start, end]`` intervals
  over the length of their union; two instants at the same time score 1, anything disjoint 0.
* **Matching, per video.** A's events and B's are paired one-to-one with the Hungarian algorithm
  (:func:`~qwen_dataset.quality.agreement.one_to_one`): the most pairs with a temporal IoU of at
  least ``min_tiou`` (default :data:`DEFAULT_MIN_TIOU` = 0.1; events that barely touch are two
  events), and among those the largest IoU sum.
* **Description similarity** of a matched pair: a function of the two texts in [0, 1]. The
  workbench decides agreement with :func:`text_similarity` (rapidfuzz, cheap, in the request);
  the quality report scores the matched pairs' descriptions with the MiniLM model
  (:mod:`qwen_dataset.quality.semantic`) through :func:`matched_descriptions`.
* Reported over a batch (:func:`event_agreement`): videos compared, events of each side, matched
  pairs, mean temporal IoU of the matches, mean description similarity, unmatched events per
  side. A video that both left without events agrees perfectly and adds nothing.

>>> temporal_iou((1.0, 3.0), (2.0, 4.0))
0.3333333333333333
>>> pairs = match_events([{"start": 0, "end": 2}, {"start": 5, "end": 6}], [{"start": 5.1, "end": 6}])
>>> [(p.index_a, p.index_b, round(p.tiou, 2)) for p in pairs.pairs], pairs.unmatched_a, pairs.unmatched_b
([(1, 0, 0.9)], [0], [])
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, utils

from qwen_dataset.quality.agreement import one_to_one, pair_annotations
from qwen_dataset.records import Source, Task

DEFAULT_MIN_TIOU = 0.1

Similarity = Callable[[str, str], float]


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two time intervals ``(start, end)`` in seconds."""
    (start_a, end_a), (start_b, end_b) = a, b
    union = max(end_a, end_b) - min(start_a, start_b)
    if union <= 0:
        return 1.0  # two instants at the same moment
    return max(0.0, min(end_a, end_b) - max(start_a, start_b)) / union


def text_similarity(a: str, b: str) -> float:
    """Cheap similarity of two descriptions in [0, 1]: rapidfuzz's token-sort ratio over
    lower-cased, punctuation-free words (word order does not count; two empty texts are equal)."""
    if not a.strip() and not b.strip():
        return 1.0
    return fuzz.token_sort_ratio(a, b, processor=utils.default_process) / 100.0


@dataclasses.dataclass(frozen=True)
class EventPair:
    index_a: int
    index_b: int
    tiou: float


@dataclasses.dataclass(frozen=True)
class EventMatching:
    """One video's matching: events by their position in each side's list."""

    pairs: list[EventPair]
    unmatched_a: list[int]
    unmatched_b: list[int]


def _interval(event: Mapping[str, Any]) -> tuple[float, float]:
    return float(event["start"]), float(event["end"])


def match_events(
    events_a: Sequence[Mapping[str, Any]], events_b: Sequence[Mapping[str, Any]], min_tiou: float = DEFAULT_MIN_TIOU
) -> EventMatching:
    """One-to-one matching of two lists of events ``{start, end, ...}`` by temporal IoU."""
    if not 0 < min_tiou <= 1:
        raise ValueError(f"min_tiou must lie in (0, 1], got {min_tiou}: disjoint events are never a match")
    score = np.array([[temporal_iou(_interval(a), _interval(b)) for b in events_b] for a in events_a], dtype=float)
    chosen = one_to_one(score.reshape(len(events_a), len(events_b)), min_tiou)
    pairs = [EventPair(i, j, float(score[i, j])) for i, j in sorted(chosen)]
    taken_a, taken_b = {pair.index_a for pair in pairs}, {pair.index_b for pair in pairs}
    return EventMatching(
        pairs,
        [i for i in range(len(events_a)) if i not in taken_a],
        [j for j in range(len(events_b)) if j not in taken_b],
    )


def events_of(payload: Mapping[str, Any] | str | None) -> list[dict[str, Any]]:
    """A ``video_event`` payload's events (a dict or its JSON text), in time order."""
    data = json.loads(payload) if isinstance(payload, str) else (payload or {})
    events = [dict(event) for event in data.get("events") or []]
    return sorted(events, key=lambda event: (float(event["start"]), float(event["end"])))


def matched_descriptions(
    payload_a: Mapping[str, Any] | str, payload_b: Mapping[str, Any] | str, min_tiou: float = DEFAULT_MIN_TIOU
) -> list[tuple[str, str]]:
    """The descriptions of each matched pair of events ``(A's, B's)``, in A's time order."""
    a, b = events_of(payload_a), events_of(payload_b)
    return [
        (str(a[pair.index_a].get("description", "")), str(b[pair.index_b].get("description", "")))
        for pair in match_events(a, b, min_tiou).pairs
    ]


@dataclasses.dataclass(frozen=True)
class EventAgreementReport:
    videos: int
    events_a: int
    events_b: int
    matched: int
    mean_tiou: float | None  # None: no matched pair to measure
    mean_description_similarity: float | None
    unmatched_a: int
    unmatched_b: int


def event_agreement(
    pairs: Iterable[tuple[Mapping[str, Any] | str, Mapping[str, Any] | str]],
    min_tiou: float = DEFAULT_MIN_TIOU,
    similarity: Similarity = text_similarity,
) -> EventAgreementReport:
    """Temporal IoU and description similarity over the matched events of many videos' pairs."""
    videos = events_a = events_b = unmatched_a = unmatched_b = 0
    tious: list[float] = []
    similarities: list[float] = []
    for payload_a, payload_b in pairs:
        a, b = events_of(payload_a), events_of(payload_b)
        matching = match_events(a, b, min_tiou)
        videos += 1
        events_a, events_b = events_a + len(a), events_b + len(b)
        unmatched_a, unmatched_b = unmatched_a + len(matching.unmatched_a), unmatched_b + len(matching.unmatched_b)
        for pair in matching.pairs:
            tious.append(pair.tiou)
            described = (str(a[pair.index_a].get("description", "")), str(b[pair.index_b].get("description", "")))
            similarities.append(similarity(*described))
    return EventAgreementReport(
        videos=videos,
        events_a=events_a,
        events_b=events_b,
        matched=len(tious),
        mean_tiou=float(np.mean(tious)) if tious else None,
        mean_description_similarity=float(np.mean(similarities)) if similarities else None,
        unmatched_a=unmatched_a,
        unmatched_b=unmatched_b,
    )


def event_agreement_from_annotations(
    annotations: pd.DataFrame,
    sources: Collection[str] | None = (Source.HUMAN.value,),
    min_tiou: float = DEFAULT_MIN_TIOU,
    similarity: Similarity = text_similarity,
) -> EventAgreementReport:
    """:func:`event_agreement` of the double-annotated videos of an annotation manifest."""
    pairs = pair_annotations(annotations, Task.VIDEO_EVENT.value, sources)
    return event_agreement(zip(pairs["payload_a"], pairs["payload_b"]), min_tiou, similarity)
