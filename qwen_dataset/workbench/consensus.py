"""Do two blind annotations of one item agree? If not, say where they differ.

Boxes are paired with the shared IoU matching (:func:`qwen_dataset.quality.agreement.match_boxes`:
Hungarian assignment, same label first). The versions agree when every box of each has a partner
with the same label at IoU >= ``min_iou`` and the pairs carry the same content:

* ``ocr``: the same text (Unicode NFC, whitespace collapsed);
* ``gui_action``: the same element text, instruction and action sequence (type, target element
  through the matching, typed text, key, direction);
* ``spatial``: the same occlusion flags, relations and depth order (through the matching);
* ``image_to_code``: the same tag per layout block and the same HTML (whitespace collapsed);
* ``video_event``: events instead of boxes, paired by temporal IoU
  (:func:`qwen_dataset.quality.event_agreement.match_events`): every event of each version has a
  partner at a temporal IoU of at least ``min_tiou``, with a description at least
  ``min_text_similarity`` alike (:func:`~qwen_dataset.quality.event_agreement.text_similarity`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from qwen_dataset.payloads import box_contents, iter_boxes
from qwen_dataset.quality.agreement import DEFAULT_MIN_IOU, frame_boxes_from_payload, match_boxes
from qwen_dataset.quality.event_agreement import DEFAULT_MIN_TIOU, events_of, match_events, text_similarity
from qwen_dataset.records import Task
from qwen_dataset.workbench.admin_settings import DEFAULT_AGREEMENT_TEXT, DEFAULT_AGREEMENT_TIOU

_SPACE = re.compile(r"\s+")
MAX_REASONS = 8


def normalize_text(value: Any) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFC", str(value or ""))).strip()


def _payload(value: Mapping[str, Any] | str) -> dict[str, Any]:
    return (json.loads(value) if isinstance(value, str) else dict(value)) or {}


def _contents(task: str, payload: dict[str, Any]) -> list[str]:
    """What each box holds beside its box and label (text, occlusion, tag), in :func:`iter_boxes` order."""
    contents = []
    for box in iter_boxes(task, payload):
        values = [_content_text(field, value) for field, value in box_contents(task, box.item).items()]
        contents.append(" | ".join(values))
    return contents


def _content_text(field: str, value: Any) -> str:
    """A field's value as compared text; a flag reads as its name when set (``occluded``), else empty."""
    if isinstance(value, bool):
        return field if value else ""
    return normalize_text(value)


def compare_versions(
    task: str,
    version_a: Mapping[str, Any] | str,
    version_b: Mapping[str, Any] | str,
    min_iou: float,
    *,
    min_tiou: float = DEFAULT_AGREEMENT_TIOU,
    min_text_similarity: float = DEFAULT_AGREEMENT_TEXT,
) -> list[str]:
    """Why the two versions disagree (at most :data:`MAX_REASONS` reasons); empty when they agree.

    ``min_iou`` is the boxes' threshold, ``min_tiou`` and ``min_text_similarity`` the events'.
    """
    a, b = _payload(version_a), _payload(version_b)
    if task == Task.VIDEO_EVENT:
        return _event_reasons(events_of(a), events_of(b), min_tiou, min_text_similarity)[:MAX_REASONS]
    boxes_a, boxes_b = frame_boxes_from_payload(task, a), frame_boxes_from_payload(task, b)
    assert boxes_a.labels is not None and boxes_b.labels is not None, "a payload's boxes always carry labels"
    matching = match_boxes(boxes_a.boxes, boxes_a.labels, boxes_b.boxes, boxes_b.labels, min_iou=DEFAULT_MIN_IOU)
    reasons: list[str] = []
    if len(matching.unmatched_a) or len(matching.unmatched_b):
        reasons.append(
            f"{len(matching.unmatched_a)} box(es) of A and {len(matching.unmatched_b)} of B have no counterpart"
        )
    texts_a, texts_b = _contents(task, a), _contents(task, b)
    for index_a, index_b, iou, same in zip(matching.index_a, matching.index_b, matching.iou, matching.same_label):
        where = f"box {int(index_a) + 1} of A / {int(index_b) + 1} of B"
        if not same:
            reasons.append(f"{where}: label {boxes_a.labels[index_a]!r} vs {boxes_b.labels[index_b]!r}")
        if iou < min_iou:
            reasons.append(f"{where}: IoU {iou:.2f} is below {min_iou:.2f}")
        if texts_a[index_a] != texts_b[index_b]:
            reasons.append(f"{where}: {texts_a[index_a]!r} vs {texts_b[index_b]!r}")
    mapping = {int(i): int(j) for i, j in zip(matching.index_a, matching.index_b)}
    reasons.extend(_structure_reasons(task, a, b, mapping))
    return reasons[:MAX_REASONS]


def _event_reasons(
    events_a: list[dict[str, Any]], events_b: list[dict[str, Any]], min_tiou: float, min_text_similarity: float
) -> list[str]:
    matching = match_events(events_a, events_b, DEFAULT_MIN_TIOU)
    reasons: list[str] = []
    if matching.unmatched_a or matching.unmatched_b:
        reasons.append(
            f"{len(matching.unmatched_a)} event(s) of A and {len(matching.unmatched_b)} of B have no counterpart"
        )
    for pair in matching.pairs:
        a, b = events_a[pair.index_a], events_b[pair.index_b]
        where = f"event {pair.index_a + 1} of A ({_span(a)}) / {pair.index_b + 1} of B ({_span(b)})"
        if pair.tiou < min_tiou:
            reasons.append(f"{where}: temporal IoU {pair.tiou:.2f} is below {min_tiou:.2f}")
        text_a, text_b = normalize_text(a.get("description")), normalize_text(b.get("description"))
        alike = text_similarity(text_a, text_b)
        if alike < min_text_similarity:
            reasons.append(f"{where}: {text_a!r} vs {text_b!r} (similarity {alike:.2f} < {min_text_similarity:.2f})")
    return reasons


def _span(event: Mapping[str, Any]) -> str:
    return f"{float(event['start']):.2f}-{float(event['end']):.2f} s"


def _mapped(index: Any, mapping: Mapping[int, int] | None) -> Any:
    """A's element index in B's numbering (``mapping`` None: B's own index, unchanged)."""
    if mapping is not None and isinstance(index, int) and not isinstance(index, bool):
        return mapping.get(index, f"unmatched {index}")
    return index


def _structure_reasons(task: str, a: dict[str, Any], b: dict[str, Any], mapping: Mapping[int, int]) -> list[str]:
    if task == Task.GUI_ACTION:
        reasons = []
        if normalize_text(a.get("instruction")) != normalize_text(b.get("instruction")):
            reasons.append("the instructions differ")
        if _actions(a.get("actions"), mapping) != _actions(b.get("actions"), None):
            reasons.append("the action sequences differ")
        return reasons
    if task == Task.SPATIAL:
        reasons = []
        relations_a = {
            (_mapped(r["subject"], mapping), r["predicate"], _mapped(r["object"], mapping))
            for r in a.get("relations") or []
        }
        relations_b = {(r["subject"], r["predicate"], r["object"]) for r in b.get("relations") or []}
        if relations_a != relations_b:
            reasons.append("the relations differ")
        if [_mapped(i, mapping) for i in a.get("depth_order") or []] != list(b.get("depth_order") or []):
            reasons.append("the depth orders differ")
        return reasons
    if task == Task.IMAGE_TO_CODE and normalize_text(a.get("html")) != normalize_text(b.get("html")):
        return ["the HTML differs"]
    return []


def _actions(actions: Sequence[Mapping[str, Any]] | None, mapping: Mapping[int, int] | None) -> list[tuple[Any, ...]]:
    # Points are left out: an action aimed at an element is the same action wherever in it one clicks.
    return [
        (
            action.get("type"),
            _mapped(action.get("target"), mapping),
            normalize_text(action.get("text")),
            normalize_text(action.get("direction")),
        )
        for action in actions or []
    ]
