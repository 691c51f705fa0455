"""GUI elements and the action for an instruction, from OCR lines and OpenCV outlines (no model).

**Elements.** Closed rectangular outlines (:func:`~qwen_dataset.prelabel.classical.regions.rectangles`)
are matched with the OCR lines whose centre they hold:

* one line, centred in a short outline: a ``button``; left-aligned in a wide outline: an ``input``
  (its text is the value or placeholder shown);
* no line, a wide short outline: an empty ``input``; a small square with a line right beside it: a
  ``checkbox``; a small square alone (at least ``ICON_MIN_SIDE`` px): an ``icon``;
* several lines, or a tall outline: a panel, which is layout rather than an element.

Lines outside every control: coloured ink (a link colour, not grey or black) makes a ``link``; the
top line of the window, a ``text`` (the title); a line right above or left of an input, a ``text``
(its label). Other text is body copy, left to the ``ocr`` task. Roles are the ``gui_action``
template's (``button``, ``input``, ``link``, ``checkbox``, ``icon``, ``text``).

**The action.** An instruction (run config or the batch's instruction file) picks its target by
fuzzy text match (rapidfuzz ``partial_ratio`` on NFKC-folded text, Chinese and English alike)
among the actionable elements; a target whose confirm/cancel meaning
(:func:`qwen_dataset.quality.action_paths.semantic_class`) contradicts the instruction's is never
picked. A quoted text in the instruction (``输入 "li.na"``, ``type 'li.na'``) on an input gives
``type`` into it; anything else is one ``click`` at the target's centre. Without an instruction the
engine proposes the screen's main action: the confirm-like button, else the first button; a screen
with no control (a document page) gets ``scroll down``. An instruction no element matches gets no
action, and ``unresolved`` says why, for the reviewer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rapidfuzz import fuzz

from qwen_dataset.prelabel.classical.regions import RECTANGLES_VERSION, rectangles
from qwen_dataset.quality.action_paths import semantic_class

#: A line's centre within this share of its outline's width from the outline's centre: centred.
CENTRED_SHARE = 0.15
#: Small square outlines: check boxes up to this side; icons from ICON_MIN_SIDE (smaller dots are decoration).
CHECKBOX_MAX_SIDE = 40
ICON_MIN_SIDE = 20
#: An outline wider than this many times its height is an input when its text is left-aligned or absent.
INPUT_MIN_ASPECT = 2.5
#: Highest outline, in line heights, that still holds one control's text.
MAX_CONTROL_LINES = 3.2
#: Ink whose channels differ by at least this much is coloured (a link), not grey.
LINK_CHROMA = 60
#: Title: the top line, its centre within this share of the frame's height from the top.
TITLE_BAND = 0.08
#: A line belongs to an outline when this share of its box lies inside it.
GLYPH_SHARE = 0.9
#: Lowest fuzzy score (0-100) for an instruction to name an element.
MATCH_SCORE = 60.0

ACTIONABLE_ROLES = ("button", "input", "link", "checkbox", "icon")
GUI_VERSION = (
    f"gui-1;{RECTANGLES_VERSION};centred{CENTRED_SHARE:g};chroma{LINK_CHROMA};match{MATCH_SCORE:g};"
    f"icon{ICON_MIN_SIDE}-check{CHECKBOX_MAX_SIDE}"
)

_QUOTED = re.compile(r"[\"“”'‘’「」『』](.+?)[\"“”'‘’「」『』]")


def _centre(box: Sequence[float]) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def _holds(outer: Sequence[float], point: tuple[float, float]) -> bool:
    return outer[0] <= point[0] <= outer[2] and outer[1] <= point[1] <= outer[3]


def _covered(inner: Sequence[float], outer: Sequence[float], share: float = 0.5) -> bool:
    """Whether at least ``share`` of ``inner``'s area lies inside ``outer``."""
    width = min(inner[2], outer[2]) - max(inner[0], outer[0])
    height = min(inner[3], outer[3]) - max(inner[1], outer[1])
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return width > 0 and height > 0 and area > 0 and width * height >= share * area


def _ink_chroma(rgb: np.ndarray, box: Sequence[float]) -> int:
    """How coloured a line's ink is: max minus min channel of its darkest-from-background pixels."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    patch = rgb[max(0, y1) : max(y1 + 1, y2), max(0, x1) : max(x1 + 1, x2)].reshape(-1, 3).astype(np.int32)
    if not len(patch):
        return 0
    background = np.median(patch, axis=0)
    distance = np.abs(patch - background).sum(axis=1)
    ink = patch[distance >= np.percentile(distance, 85)]
    colour = ink.mean(axis=0) if len(ink) else background
    return int(colour.max() - colour.min())


def _classify_outline(
    box: list[float], lines: list[dict[str, Any]], line_height: float, neighbours: list[dict[str, Any]]
) -> dict[str, Any] | None:
    width, height = box[2] - box[0], box[3] - box[1]
    if len(lines) > 1 or (lines and height > MAX_CONTROL_LINES * line_height):
        return None  # a panel holding several things
    if not lines:
        square = 0.75 <= width / height <= 1.33
        if square and width <= CHECKBOX_MAX_SIDE:
            beside = [
                line
                for line in neighbours
                if 0 <= line["bbox"][0] - box[2] <= 2 * width
                and _holds([-1e9, box[1], 1e9, box[3]], _centre(line["bbox"]))
            ]
            if beside:
                return {"bbox": box, "role": "checkbox", "text": beside[0]["text"]}
            if width >= ICON_MIN_SIDE:
                return {"bbox": box, "role": "icon", "text": ""}
            return None
        if width / height >= INPUT_MIN_ASPECT and height <= 4 * max(line_height, 12):
            return {"bbox": box, "role": "input", "text": ""}
        return None
    line = lines[0]
    offset = abs(_centre(line["bbox"])[0] - _centre(box)[0])
    if offset <= CENTRED_SHARE * width:
        return {"bbox": box, "role": "button", "text": line["text"]}
    return {"bbox": box, "role": "input", "text": line["text"]}


def _labels_an_input(line: dict[str, Any], inputs: list[list[float]], line_height: float) -> bool:
    x1, y1, x2, y2 = line["bbox"]
    for box in inputs:
        above = 0 <= box[1] - y2 <= 2.5 * line_height and x1 < box[2] and x2 > box[0]
        left = 0 <= box[0] - x2 <= 12 * line_height and box[1] <= (y1 + y2) / 2 <= box[3]
        if above or left:
            return True
    return False


def detect_elements(bgr: np.ndarray, regions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The GUI elements of a screenshot (8-bit BGR) given its OCR regions; in reading order of their boxes."""
    height = bgr.shape[0]
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    lines: list[dict[str, Any]] = [
        {"bbox": [float(v) for v in r["bbox"]], "text": str(r.get("text", ""))} for r in regions
    ]
    line_height = float(np.median([b["bbox"][3] - b["bbox"][1] for b in lines])) if lines else 20.0
    elements: list[dict[str, Any]] = []
    claimed: set[int] = set()
    # Glyphs of a text line (a 口 or an O) are closed outlines too: shapes mostly inside a line are ink.
    outlines = [box for box in rectangles(bgr) if not any(_covered(box, line["bbox"]) for line in lines)]
    # Smallest first, so a control claims its text before the panel around it sees it.
    for box in sorted(outlines, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])):
        inside = [i for i, line in enumerate(lines) if i not in claimed and _covered(line["bbox"], box, GLYPH_SHARE)]
        element = _classify_outline(box, [lines[i] for i in inside], line_height, lines)
        if element is not None:
            if any(_holds(other["bbox"], _centre(box)) for other in elements):
                continue  # an outline inside a control (a focus ring, an inner border)
            elements.append(element)
            claimed.update(inside)
    inputs = [element["bbox"] for element in elements if element["role"] == "input"]
    free = [i for i in range(len(lines)) if i not in claimed]
    title = min(free, key=lambda i: lines[i]["bbox"][1], default=None)
    for i in free:
        line = lines[i]
        if _ink_chroma(rgb, line["bbox"]) >= LINK_CHROMA:
            elements.append({**line, "role": "link"})
        elif (i == title and _centre(line["bbox"])[1] <= TITLE_BAND * height) or _labels_an_input(
            line, inputs, line_height
        ):
            elements.append({**line, "role": "text"})
    elements.sort(key=lambda element: (round(element["bbox"][1] / max(line_height, 1.0)), element["bbox"][0]))
    return [{"bbox": [round(v, 2) for v in e["bbox"]], "role": e["role"], "text": e["text"]} for e in elements]


def _fold(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def match_score(instruction: str, text: str) -> float:
    """How well an element's text is named by an instruction (0-100; 0 for an element without text)."""
    wanted, have = _fold(instruction), _fold(text)
    if not have or not wanted:
        return 0.0
    return float(fuzz.partial_ratio(have, wanted))


def find_target(instruction: str, elements: Sequence[Mapping[str, Any]]) -> int | None:
    """Index of the actionable element the instruction names best, or None when none scores ``MATCH_SCORE``.

    An element whose confirm/cancel meaning is the opposite of the instruction's is skipped, so
    "取消订单" never lands on "提交订单" however alike the words look.
    """
    meaning = semantic_class(instruction)
    candidates = []
    for index, element in enumerate(elements):
        own = semantic_class(element.get("text"))
        if element.get("role") not in ACTIONABLE_ROLES or (meaning and own and own != meaning):
            continue
        text = str(element.get("text", ""))
        # On a tie the longer text wins: it is the more specific name ("Sign in" over "in"); then the first.
        candidates.append((match_score(instruction, text), len(text), -index))
    best = max(candidates, default=None)
    return -best[2] if best is not None and best[0] >= MATCH_SCORE else None


def main_action_target(elements: Sequence[Mapping[str, Any]]) -> int | None:
    """The screen's main action when no instruction is given: the confirm-like button, else the first button."""
    buttons = [i for i, element in enumerate(elements) if element.get("role") == "button"]
    confirming = [i for i in buttons if semantic_class(elements[i].get("text")) == "confirm"]
    chosen = confirming or buttons
    return chosen[0] if chosen else None


def _click(target: int, element: Mapping[str, Any]) -> dict[str, Any]:
    x, y = _centre(element["bbox"])
    return {"type": "click", "target": target, "point": [round(x, 2), round(y, 2)], "text": element.get("text") or None}


def actions_for(instruction: str | None, elements: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``instruction`` (the one carried out), ``requested_instruction`` and ``actions`` for the elements.

    See the module docstring for the rules; ``unresolved`` is set when a given instruction names no element.
    """
    if instruction:
        target = find_target(instruction, elements)
        if target is None:
            return {
                "instruction": instruction,
                "requested_instruction": instruction,
                "actions": [],
                "unresolved": f"no element's text matches the instruction (fuzzy score below {MATCH_SCORE:g})",
            }
        element = elements[target]
        quoted = _QUOTED.search(instruction)
        if element.get("role") == "input" and quoted:
            centre = _centre(element["bbox"])
            action = {
                "type": "type",
                "target": target,
                "point": [round(centre[0], 2), round(centre[1], 2)],
                "text": quoted.group(1),
            }
            return {"instruction": instruction, "requested_instruction": instruction, "actions": [action]}
        return {"instruction": instruction, "requested_instruction": instruction, "actions": [_click(target, element)]}
    target = main_action_target(elements)
    if target is None:
        return {
            "instruction": "Scroll down",
            "requested_instruction": "",
            "actions": [{"type": "scroll", "direction": "down"}],
        }
    element = elements[target]
    return {
        "instruction": f"Click {element.get('text') or 'the button'}",
        "requested_instruction": "",
        "actions": [_click(target, element)],
    }


def gui_payload(bgr: np.ndarray, regions: Sequence[Mapping[str, Any]], instruction: str | None) -> dict[str, Any]:
    """The ``gui_action`` payload of one screenshot: elements, instruction and actions."""
    elements = detect_elements(bgr, regions)
    return {"elements": elements, **actions_for(instruction, elements)}
