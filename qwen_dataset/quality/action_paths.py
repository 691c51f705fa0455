"""Action-path completeness: does each GUI action sequence execute on its screenshot?

Definition (target: completeness > 90 %): each ``gui_action`` payload (``elements`` with pixel
``bbox``, ``role``, ``text``; an ``instruction``; ``actions`` with ``type``, ``target`` (element
index, or an element's text, or null), ``point``, ``end_point``, ``text``, ``direction``) is
replayed step by step on its element list. A sequence **completes** when every step resolves;
completeness = completed sequences / sequences (1.0 when there are none). The first step that
does not resolve ends the replay, and its code says why:

=========================  ===================================================================
``empty_sequence``         the sequence has no action, so it accomplishes nothing
``unknown_action``         the type is none of click, long_press, type, scroll, drag, key, wait
``incomplete_action``      a field the type needs is missing: click/long_press need a target or
                           a point, drag a point and an end point, type/key a text, scroll a
                           direction (or a point is not two numbers)
``out_of_frame_point``     a point (or a drag's end point) lies outside the frame
``missing_element``        the target index is not in the element list, no element has the
                           target text, or a click without target hits no element
``point_outside_element``  the point lies outside the target element's box
``wrong_role``             the element contradicts the step: its text has the opposite meaning
                           of the expected text (a "Cancel"/"取消" button where the step says
                           "OK"/"提交"), or the sequence's last click lands on a cancel element
                           though the instruction asks to confirm/submit/save, or a ``type``
                           targets an element that is not a text input
``text_mismatch``          the step names a text (its ``text``) that the element's text neither
                           equals, contains, nor shares a meaning with (see below)
``type_without_focus``     a ``type`` without target while no text input has focus
=========================  ===================================================================

Rules of the replay:

* Points are pixels of the frame; ``0 <= x <= width`` and ``0 <= y <= height`` (skipped when the
  frame size is unknown); a box contains a point on its edges too.
* click / long_press act on an element: the target, or when the target is null the smallest
  element under the point. Without a point, the target alone says where.
* The text a click expects is its ``text`` field, or the target when the target is a text. Texts
  are compared after NFKC, ``casefold`` and whitespace removal; an element without text (an
  icon) matches any expected text, since nothing contradicts it.
* Focus: a click or long press on a text input (role in :data:`INPUT_ROLES`) focuses it, one on
  any other element takes the focus away; a ``type`` with a target focuses that target (which
  must be a text input). scroll, drag, key and wait keep the focus.

Confirm vs cancel semantics (:data:`CONFIRM_WORDS`, :data:`CANCEL_WORDS`, English and Chinese):
a text *means* confirm or cancel when it contains a listed word (English words as whole words,
Chinese words of two or more characters anywhere); single-character words (是, 好, 否) count only
as the whole text. Cancel phrases are removed before confirm words are looked for, so "不同意"
means cancel and not "同意"; a text with both meanings means neither. The instruction check looks
at the last click or long press only, and only one way (a confirm instruction ending on a cancel
element): a cancel instruction legitimately ends on the "OK" of a confirmation dialog.

>>> payload = {"elements": [{"bbox": [0, 0, 100, 40], "role": "button", "text": "取消"}],
...            "instruction": "提交订单", "actions": [{"type": "click", "target": 0, "point": [50, 20]}]}
>>> simulate_actions(payload, width=200, height=100).code
'wrong_role'
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import pandas as pd

from qwen_dataset.geometry import contains_point
from qwen_dataset.payloads import iter_boxes
from qwen_dataset.records import AnnotationStatus, Task, load_payload

TARGET_COMPLETENESS = 0.90

EMPTY_SEQUENCE = "empty_sequence"
UNKNOWN_ACTION = "unknown_action"
INCOMPLETE_ACTION = "incomplete_action"
OUT_OF_FRAME_POINT = "out_of_frame_point"
MISSING_ELEMENT = "missing_element"
POINT_OUTSIDE_ELEMENT = "point_outside_element"
WRONG_ROLE = "wrong_role"
TEXT_MISMATCH = "text_mismatch"
TYPE_WITHOUT_FOCUS = "type_without_focus"

FAILURE_CODES = (
    EMPTY_SEQUENCE,
    UNKNOWN_ACTION,
    INCOMPLETE_ACTION,
    OUT_OF_FRAME_POINT,
    MISSING_ELEMENT,
    POINT_OUTSIDE_ELEMENT,
    WRONG_ROLE,
    TEXT_MISMATCH,
    TYPE_WITHOUT_FOCUS,
)

ACTION_TYPES = frozenset({"click", "long_press", "type", "scroll", "drag", "key", "wait"})
_PRESS_TYPES = frozenset({"click", "long_press"})

#: Roles that take typed text. The template's own role is ``input``; the rest are names human
#: annotators and other tools use for the same thing.
INPUT_ROLES = frozenset({"input", "textarea", "textbox", "text_field", "search", "searchbox", "combobox", "editable"})

#: Words that make a text mean "go ahead" (English, Chinese).
CONFIRM_WORDS = frozenset(
    {
        "ok",
        "okay",
        "confirm",
        "yes",
        "submit",
        "save",
        "apply",
        "done",
        "accept",
        "agree",
        "continue",
        "send",
        "allow",
        "proceed",
        "finish",
        "确定",
        "确认",
        "提交",
        "保存",
        "好的",
        "同意",
        "应用",
        "完成",
        "发送",
        "允许",
        "继续",
        "是",
        "好",
    }
)
#: Words that make a text mean "back out" (English, Chinese).
CANCEL_WORDS = frozenset(
    {
        "cancel",
        "no",
        "close",
        "dismiss",
        "discard",
        "abort",
        "decline",
        "deny",
        "reject",
        "not now",
        "no thanks",
        "don't save",
        "do not save",
        "later",
        "取消",
        "关闭",
        "返回",
        "放弃",
        "拒绝",
        "不同意",
        "暂不",
        "以后再说",
        "不保存",
        "否",
    }
)


@dataclasses.dataclass(frozen=True)
class PathResult:
    """Outcome of one replay: ``code`` and ``step`` (0-based) of the first failure, if any."""

    completed: bool
    code: str | None = None
    step: int | None = None
    reason: str = ""


class ActionSequence(NamedTuple):
    """One gui_action payload with its frame size (``None`` when unknown) and an id for reports."""

    payload: Mapping[str, Any] | str
    width: float | None = None
    height: float | None = None
    sequence_id: str = ""


@dataclasses.dataclass(frozen=True)
class ActionPathReport:
    sequences: int
    completed: int
    failures: dict[str, int]  # failure code -> sequences that stopped on it
    per_sequence: pd.DataFrame | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def completeness(self) -> float:
        return self.completed / self.sequences if self.sequences else 1.0

    def passes(self, target: float = TARGET_COMPLETENESS) -> bool:
        return self.completeness > target

    def to_metadata(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "sequences": self.sequences,
            "completed": self.completed,
            "completeness": self.completeness,
        }
        figures.update({f"failed_{code}": self.failures.get(code, 0) for code in FAILURE_CODES})
        return figures


# --------------------------------------------------------------------------------------------
# Text semantics


def _fold(text: Any) -> str:
    return unicodedata.normalize("NFKC", str(text or "")).casefold().strip()


def _squash(text: Any) -> str:
    return "".join(_fold(text).split())


def _word_pattern(word: str) -> re.Pattern[str]:
    # English words match whole words only ("no" is not in "notice"); Chinese has no spaces.
    if word.isascii():
        return re.compile(rf"(?<![a-z']){re.escape(word)}(?![a-z'])")
    return re.compile(re.escape(word))


_CONFIRM_PATTERNS = [_word_pattern(word) for word in CONFIRM_WORDS if word.isascii() or len(word) >= 2]
_CANCEL_PATTERNS = [
    _word_pattern(word) for word in sorted(CANCEL_WORDS, key=len, reverse=True) if word.isascii() or len(word) >= 2
]


def semantic_class(text: Any) -> str | None:
    """``"confirm"``, ``"cancel"`` or ``None`` (neither, or both) for a label or an instruction."""
    folded = " ".join(_fold(text).split())
    if not folded:
        return None
    if folded in CANCEL_WORDS:
        return "cancel"
    if folded in CONFIRM_WORDS:
        return "confirm"
    rest, cancel = folded, False
    for pattern in _CANCEL_PATTERNS:  # longest first, so "不同意" goes before its "同意" is seen
        rest, found = pattern.subn(" ", rest)
        cancel = cancel or found > 0
    confirm = any(pattern.search(rest) for pattern in _CONFIRM_PATTERNS)
    if cancel == confirm:
        return None
    return "cancel" if cancel else "confirm"


def _texts_agree(expected: str, element_text: str) -> bool:
    want, have = _squash(expected), _squash(element_text)
    if not have or want == have or want in have or have in want:
        return True
    meaning = semantic_class(expected)
    return meaning is not None and meaning == semantic_class(element_text)


def _opposite(expected: str, element_text: str) -> bool:
    want, have = semantic_class(expected), semantic_class(element_text)
    return want is not None and have is not None and want != have


# --------------------------------------------------------------------------------------------
# Geometry of a step


class _Failure(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _point(
    action: Mapping[str, Any], field: str, width: float | None, height: float | None
) -> tuple[float, float] | None:
    value = action.get(field)
    if value is None:
        return None
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        raise _Failure(INCOMPLETE_ACTION, f"{field} {value!r} is not an [x, y] pair of numbers") from None
    if width is not None and height is not None and not (0 <= x <= width and 0 <= y <= height):
        raise _Failure(OUT_OF_FRAME_POINT, f"{field} ({x:g}, {y:g}) lies outside the {width:g}x{height:g} frame")
    return x, y


def _contains(element: Mapping[str, Any], point: tuple[float, float]) -> bool:
    return contains_point(element["bbox"], point)


def _area(element: Mapping[str, Any]) -> float:
    x1, y1, x2, y2 = (float(v) for v in element["bbox"])
    return (x2 - x1) * (y2 - y1)


def _describe(index: int, element: Mapping[str, Any]) -> str:
    return f"element {index} ({element.get('role', '?')} {element.get('text', '')!r})"


def _element_by_text(elements: Sequence[Mapping[str, Any]], target: str, point: tuple[float, float] | None) -> int:
    under = [i for i, element in enumerate(elements) if point is not None and _contains(element, point)]
    for index in under:
        if _opposite(target, elements[index].get("text", "")):
            raise _Failure(
                WRONG_ROLE,
                f"target {target!r} but the point is on {_describe(index, elements[index])}, which means the opposite",
            )
    candidates = [
        i
        for i, element in enumerate(elements)
        if _squash(element.get("text")) and _texts_agree(target, element.get("text", ""))
    ]
    if not candidates:
        raise _Failure(MISSING_ELEMENT, f"no element has the text {target!r}")
    exact = [i for i in candidates if _squash(elements[i].get("text")) == _squash(target)]
    ranked = exact or candidates
    hit = [i for i in ranked if point is not None and _contains(elements[i], point)]
    return (hit or ranked)[0]


def _resolve_target(
    elements: Sequence[Mapping[str, Any]], action: Mapping[str, Any], point: tuple[float, float] | None, required: bool
) -> int | None:
    """The element index the action acts on (checked against its point), or None."""
    target = action.get("target")
    if isinstance(target, str) and target.strip():
        index = _element_by_text(elements, target, point)
    elif isinstance(target, int) and not isinstance(target, bool):
        if not 0 <= target < len(elements):
            raise _Failure(MISSING_ELEMENT, f"target {target} is not an index into the {len(elements)} element(s)")
        index = target
    elif target in (None, ""):
        if not required:
            return None
        if point is None:
            raise _Failure(INCOMPLETE_ACTION, "the action has neither a target nor a point")
        under = [i for i, element in enumerate(elements) if _contains(element, point)]
        if not under:
            raise _Failure(MISSING_ELEMENT, f"no element lies under the point ({point[0]:g}, {point[1]:g})")
        return min(under, key=lambda i: _area(elements[i]))
    else:
        raise _Failure(MISSING_ELEMENT, f"target {target!r} is neither an element index nor an element's text")
    if point is not None and not _contains(elements[index], point):
        raise _Failure(
            POINT_OUTSIDE_ELEMENT,
            f"point ({point[0]:g}, {point[1]:g}) is outside {_describe(index, elements[index])} at {list(elements[index]['bbox'])}",
        )
    return index


def _expected_text(action: Mapping[str, Any]) -> str:
    if action.get("text"):
        return str(action["text"])
    target = action.get("target")
    return target if isinstance(target, str) else ""


def _check_press_semantics(element: Mapping[str, Any], index: int, action: Mapping[str, Any]) -> None:
    expected = _expected_text(action)
    if not expected:
        return
    if _opposite(expected, element.get("text", "")):
        raise _Failure(WRONG_ROLE, f"the step expects {expected!r} but {_describe(index, element)} means the opposite")
    if not _texts_agree(expected, element.get("text", "")):
        raise _Failure(TEXT_MISMATCH, f"the step expects {expected!r} but acts on {_describe(index, element)}")


def _is_input(element: Mapping[str, Any]) -> bool:
    return _fold(element.get("role")) in INPUT_ROLES


# --------------------------------------------------------------------------------------------
# The replay


@dataclasses.dataclass
class _State:
    elements: Sequence[Mapping[str, Any]]
    width: float | None
    height: float | None
    focused: int | None = None


def _press(state: _State, action: Mapping[str, Any]) -> int:
    point = _point(action, "point", state.width, state.height)
    index = _resolve_target(state.elements, action, point, required=True)
    assert index is not None, "a required target is found, or the step fails"
    element = state.elements[index]
    _check_press_semantics(element, index, action)
    state.focused = index if _is_input(element) else None
    return index


def _type(state: _State, action: Mapping[str, Any]) -> None:
    if not action.get("text"):
        raise _Failure(INCOMPLETE_ACTION, "a type action needs the text to type")
    point = _point(action, "point", state.width, state.height)
    # The text of a type action is what gets typed, not the target's label: resolve by target only.
    index = _resolve_target(state.elements, {"target": action.get("target")}, point, required=False)
    if index is None:
        if state.focused is None:
            raise _Failure(TYPE_WITHOUT_FOCUS, "nothing to type into: no target and no text input was clicked before")
        return
    if not _is_input(state.elements[index]):
        raise _Failure(WRONG_ROLE, f"typing into {_describe(index, state.elements[index])}, which is not a text input")
    state.focused = index


def _scroll(state: _State, action: Mapping[str, Any]) -> None:
    if not action.get("direction"):
        raise _Failure(INCOMPLETE_ACTION, "a scroll action needs a direction")
    point = _point(action, "point", state.width, state.height)
    _resolve_target(state.elements, action, point, required=False)


def _drag(state: _State, action: Mapping[str, Any]) -> None:
    start = _point(action, "point", state.width, state.height)
    end = _point(action, "end_point", state.width, state.height)
    if start is None or end is None:
        raise _Failure(INCOMPLETE_ACTION, "a drag action needs a point and an end point")
    _resolve_target(state.elements, action, start, required=False)


def _key(state: _State, action: Mapping[str, Any]) -> None:
    if not action.get("text"):
        raise _Failure(INCOMPLETE_ACTION, "a key action needs the key name in text (e.g. 'Enter')")


def _last_press(actions: Sequence[Any]) -> int | None:
    presses = [
        i for i, action in enumerate(actions) if isinstance(action, Mapping) and action.get("type") in _PRESS_TYPES
    ]
    return presses[-1] if presses else None


def _step(state: _State, action: Any, is_last_press: bool, instruction_meaning: str | None) -> None:
    if not isinstance(action, Mapping):
        raise _Failure(UNKNOWN_ACTION, f"an action must be an object with a type, got {type(action).__name__}")
    kind = action.get("type")
    if kind not in ACTION_TYPES:
        raise _Failure(UNKNOWN_ACTION, f"action type {kind!r} is none of {sorted(ACTION_TYPES)}")
    if kind in _PRESS_TYPES:
        index = _press(state, action)
        element = state.elements[index]
        if is_last_press and instruction_meaning == "confirm" and semantic_class(element.get("text")) == "cancel":
            raise _Failure(
                WRONG_ROLE, f"the instruction asks to confirm but the last {kind} lands on {_describe(index, element)}"
            )
    elif kind == "type":
        _type(state, action)
    elif kind == "scroll":
        _scroll(state, action)
    elif kind == "drag":
        _drag(state, action)
    elif kind == "key":
        _key(state, action)


def simulate_actions(
    payload: Mapping[str, Any] | str, width: float | None = None, height: float | None = None
) -> PathResult:
    """Replay one gui_action payload (dict or JSON text) on its elements; see the module docstring."""
    data = load_payload(payload) if isinstance(payload, str) else payload
    actions = list((data or {}).get("actions") or [])
    if not actions:
        return PathResult(False, EMPTY_SEQUENCE, None, "the sequence has no action")
    state = _State([box.item for box in iter_boxes(Task.GUI_ACTION.value, data)], width, height)
    last_press = _last_press(actions)
    meaning = semantic_class(data.get("instruction"))
    for step, action in enumerate(actions):
        try:
            _step(state, action, step == last_press, meaning)
        except _Failure as failure:
            return PathResult(False, failure.code, step, failure.reason)
    return PathResult(True)


def action_completeness(sequences: Iterable[ActionSequence | tuple], per_sequence: bool = False) -> ActionPathReport:
    """Share of sequences that complete, and the failure codes of the others.

    Each item is an :class:`ActionSequence` or a tuple ``(payload, width, height[, sequence_id])``.
    With ``per_sequence=True`` the report carries a DataFrame ``sequence_id, completed, code,
    step, reason``.
    """
    rows = []
    for position, item in enumerate(sequences):
        sequence = ActionSequence(*item)
        result = simulate_actions(sequence.payload, sequence.width, sequence.height)
        rows.append((sequence.sequence_id or str(position), result))
    # A replay has a code exactly when it failed.
    failures = Counter(result.code for _, result in rows if result.code is not None)
    table = None
    if per_sequence:
        table = pd.DataFrame(
            [(sid, r.completed, r.code, r.step, r.reason) for sid, r in rows],
            columns=["sequence_id", "completed", "code", "step", "reason"],
        )
    completed = sum(result.completed for _, result in rows)
    return ActionPathReport(len(rows), completed, dict(failures.most_common()), table)


def action_completeness_from_annotations(
    annotations: pd.DataFrame, frames: pd.DataFrame | None = None, per_sequence: bool = False
) -> ActionPathReport:
    """Completeness of the ``gui_action`` rows (status ok) of an annotation manifest.

    ``frames`` (FrameRecord rows) gives each frame's width and height for the out-of-frame check;
    without it, or for a frame it lacks, that check is skipped. Sequences are identified by
    ``annotation_id``.
    """
    rows = annotations[(annotations["task"] == "gui_action") & (annotations["status"] == AnnotationStatus.OK.value)]
    # Unknown sizes are (None, None): the out-of-frame check is skipped.
    sizes: dict[str, tuple[float | None, float | None]] = {}
    if frames is not None and len(frames):
        sizes = {fid: (float(w), float(h)) for fid, w, h in zip(frames["frame_id"], frames["width"], frames["height"])}
    return action_completeness(
        (
            ActionSequence(row.payload, *sizes.get(row.frame_id, (None, None)), row.annotation_id)
            for row in rows.itertuples(index=False)
        ),
        per_sequence=per_sequence,
    )
