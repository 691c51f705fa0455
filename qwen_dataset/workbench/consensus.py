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

import dataclasses
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from qwen_dataset.payloads import box_contents, box_source, iter_boxes
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


def _contents(task: str, payload: Mapping[str, Any]) -> list[str]:
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


class _Paired:
    """What a box or an event of one version is to the other version."""

    partner: int | None
    issues: tuple[str, ...]

    @property
    def agrees(self) -> bool:
        return self.partner is not None and not self.issues

    @property
    def status(self) -> str:
        """``agrees``, ``differs`` (paired, but not alike) or ``alone`` (no counterpart)."""
        if self.partner is None:
            return "alone"
        return "differs" if self.issues else "agrees"


@dataclasses.dataclass(frozen=True)
class BoxMark(_Paired):
    """One box of a version as a comparison sees it. ``number`` counts from 1 in payload order
    (:func:`iter_boxes`), as the reasons and the arbitration view name boxes; ``partner`` is the
    number of the other version's box it was paired with (None: no counterpart); ``issues`` say
    how the pair differs (empty: they agree)."""

    number: int
    bbox: list[float]
    label: str
    content: str
    partner: int | None
    issues: tuple[str, ...] = ()

    def describe(self, task: str) -> str:
        """How a person finds it: what it holds and where, e.g. ``'Total' at 40,40-160,80``."""
        labelled = box_source(task).label_field is not None and self.label
        held = [self.label] if labelled else []
        if self.content:
            held.append(repr(self.content))
        x1, y1, x2, y2 = (round(value) for value in self.bbox)
        return " ".join([*held, f"at {x1},{y1}-{x2},{y2}"])


@dataclasses.dataclass(frozen=True)
class BoxComparison:
    """Every box of both versions, paired (see :func:`compare_boxes`)."""

    a: list[BoxMark]
    b: list[BoxMark]
    mapping: dict[int, int]  # A's box index -> B's (0-based), for the structure checks


def compare_boxes(task: str, a: Mapping[str, Any], b: Mapping[str, Any], min_iou: float) -> BoxComparison:
    """Pair the boxes of two versions and say, box by box, where they differ."""
    boxes_a, boxes_b = frame_boxes_from_payload(task, a), frame_boxes_from_payload(task, b)
    assert boxes_a.labels is not None and boxes_b.labels is not None, "a payload's boxes always carry labels"
    matching = match_boxes(boxes_a.boxes, boxes_a.labels, boxes_b.boxes, boxes_b.labels, min_iou=DEFAULT_MIN_IOU)
    texts_a, texts_b = _contents(task, a), _contents(task, b)
    issues_a: dict[int, list[str]] = {}
    partners = {int(i): int(j) for i, j in zip(matching.index_a, matching.index_b)}
    for index_a, index_b, iou, same in zip(matching.index_a, matching.index_b, matching.iou, matching.same_label):
        issues = issues_a.setdefault(int(index_a), [])
        if not same:
            issues.append(f"label {boxes_a.labels[index_a]!r} vs {boxes_b.labels[index_b]!r}")
        if iou < min_iou:
            issues.append(f"IoU {iou:.2f} is below {min_iou:.2f}")
        if texts_a[index_a] != texts_b[index_b]:
            issues.append(f"{texts_a[index_a]!r} vs {texts_b[index_b]!r}")
    back = {j: i for i, j in partners.items()}

    def marks(boxes, texts, partner_of, issues_of) -> list[BoxMark]:
        return [
            BoxMark(
                number=index + 1,
                bbox=[float(value) for value in boxes.boxes[index]],
                label=str(boxes.labels[index]),
                content=texts[index],
                partner=None if partner_of.get(index) is None else partner_of[index] + 1,
                issues=tuple(issues_of(index)),
            )
            for index in range(len(texts))
        ]

    return BoxComparison(
        marks(boxes_a, texts_a, partners, lambda i: issues_a.get(i, [])),
        marks(boxes_b, texts_b, back, lambda j: issues_a.get(back[j], []) if j in back else []),
        partners,
    )


def version_marks(task: str, payload: Mapping[str, Any] | str) -> list[BoxMark]:
    """The boxes of one version on their own (the AI's, shown beside the two blind versions)."""
    data = _payload(payload)
    boxes = frame_boxes_from_payload(task, data)
    assert boxes.labels is not None, "a payload's boxes always carry labels"
    return [
        BoxMark(
            number=index + 1,
            bbox=[float(value) for value in boxes.boxes[index]],
            label=str(boxes.labels[index]),
            content=text,
            partner=None,
        )
        for index, text in enumerate(_contents(task, data))
    ]


#: How many boxes without a counterpart one side's reason lists by name.
NAMED_UNMATCHED = 3


def _unmatched_reasons(task: str, side: str, other: str, marks: list[BoxMark]) -> list[str]:
    alone = [f"{mark.number} of {side} ({mark.describe(task)})" for mark in marks if mark.partner is None]
    return _alone_reason("box", side, other, alone)


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
    A box or event without a counterpart is named: its number, what it holds and where.
    """
    a, b = _payload(version_a), _payload(version_b)
    if task == Task.VIDEO_EVENT:
        return _event_reasons(events_of(a), events_of(b), min_tiou, min_text_similarity)[:MAX_REASONS]
    comparison = compare_boxes(task, a, b, min_iou)
    reasons = _unmatched_reasons(task, "A", "B", comparison.a) + _unmatched_reasons(task, "B", "A", comparison.b)
    for mark in comparison.a:
        where = f"box {mark.number} of A / {mark.partner} of B"
        reasons.extend(f"{where}: {issue}" for issue in mark.issues)
    reasons.extend(_structure_reasons(task, a, b, comparison.mapping))
    return reasons[:MAX_REASONS]


@dataclasses.dataclass(frozen=True)
class EventMark(_Paired):
    """One event of a version as a comparison sees it (numbers and partners as :class:`BoxMark`'s)."""

    number: int
    start: float
    end: float
    description: str
    partner: int | None
    issues: tuple[str, ...] = ()

    def describe(self) -> str:
        """``1.40-2.60 s, 'green'``: when it happens and what."""
        return _event_text({"start": self.start, "end": self.end, "description": self.description})


def compare_events(
    events_a: list[dict[str, Any]], events_b: list[dict[str, Any]], min_tiou: float, min_text_similarity: float
) -> tuple[list[EventMark], list[EventMark]]:
    """Pair the events of two versions by temporal IoU and say, event by event, where they differ."""
    matching = match_events(events_a, events_b, DEFAULT_MIN_TIOU)
    partners = {pair.index_a: pair.index_b for pair in matching.pairs}
    issues: dict[int, list[str]] = {}
    for pair in matching.pairs:
        a, b = events_a[pair.index_a], events_b[pair.index_b]
        found = issues.setdefault(pair.index_a, [])
        if pair.tiou < min_tiou:
            found.append(f"temporal IoU {pair.tiou:.2f} is below {min_tiou:.2f}")
        text_a, text_b = normalize_text(a.get("description")), normalize_text(b.get("description"))
        alike = text_similarity(text_a, text_b)
        if alike < min_text_similarity:
            found.append(f"{text_a!r} vs {text_b!r} (similarity {alike:.2f} < {min_text_similarity:.2f})")
    back = {j: i for i, j in partners.items()}

    def marks(events: list[dict[str, Any]], partner_of: Mapping[int, int], key_of) -> list[EventMark]:
        return [
            _event_mark(
                index,
                event,
                partner=partner_of[index] + 1 if index in partner_of else None,
                issues=tuple(issues.get(key_of(index), [])),
            )
            for index, event in enumerate(events)
        ]

    return marks(events_a, partners, lambda i: i), marks(events_b, back, lambda j: back.get(j, -1))


def _event_mark(
    index: int, event: Mapping[str, Any], partner: int | None = None, issues: tuple[str, ...] = ()
) -> EventMark:
    """Event ``index`` of a version as the arbitration page numbers it (from 1)."""
    return EventMark(
        number=index + 1,
        start=float(event["start"]),
        end=float(event["end"]),
        description=normalize_text(event.get("description")),
        partner=partner,
        issues=issues,
    )


def version_events(payload: Mapping[str, Any] | str) -> list[EventMark]:
    """The events of one version on their own (the AI's, shown beside the two blind versions)."""
    return [_event_mark(index, event) for index, event in enumerate(events_of(_payload(payload)))]


def _alone_reason(kind: str, side: str, other: str, named: list[str]) -> list[str]:
    """One reason listing the first :data:`NAMED_UNMATCHED` of ``named`` (the ``kind``, box or
    event, of ``side`` without a counterpart in ``other``) and counting the rest."""
    if not named:
        return []
    shown = [f"{kind} {name}" for name in named[:NAMED_UNMATCHED]]
    more = len(named) - len(shown)
    many = "boxes" if kind == "box" else f"{kind}s"
    listed = "; ".join(shown) + (f"; and {more} more {many} of {side}" if more else "")
    return [f"no counterpart in {other} for {listed}"]


def _event_reasons(
    events_a: list[dict[str, Any]], events_b: list[dict[str, Any]], min_tiou: float, min_text_similarity: float
) -> list[str]:
    marks_a, marks_b = compare_events(events_a, events_b, min_tiou, min_text_similarity)
    reasons: list[str] = []
    for side, other, marks in (("A", "B", marks_a), ("B", "A", marks_b)):
        alone = [f"{mark.number} of {side} ({mark.describe()})" for mark in marks if mark.partner is None]
        reasons.extend(_alone_reason("event", side, other, alone))
    for mark in marks_a:
        if mark.partner is None:
            continue
        partner = marks_b[mark.partner - 1]
        where = f"event {mark.number} of A ({_span(mark.__dict__)}) / {partner.number} of B ({_span(partner.__dict__)})"
        reasons.extend(f"{where}: {issue}" for issue in mark.issues)
    return reasons


def _event_text(event: Mapping[str, Any]) -> str:
    description = normalize_text(event.get("description"))
    return f"{_span(event)}, {description!r}" if description else _span(event)


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
