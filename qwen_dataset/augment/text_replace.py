"""Text replacement: paint a labelled text over with its background and write other words there.

For a frame whose labels hold a text found in the replacement table (``"Submit" -> "Send"``,
``"提交" -> "发送"``, ...), the augmentation

1. finds the text's pixels: an ``ocr`` region's box, or, for a ``gui_action`` element with no OCR
   region on it, the ink inside the element (a button's label inside the button);
2. estimates the background from the pixels around the text (median colour; ``cv2.inpaint`` when
   that surround is not flat) and paints the text's box with it;
3. renders the new words with the bundled Noto Sans CJK font in the old text's colour, at the
   largest size that fits the old ink's height and the box's width, left-aligned as the old text
   was (centred in buttons and tabs);
4. updates every label that names the old text at that place: the ``ocr`` region (text, box =
   the new ink, language, confidence 1.0 since the text is now known exactly), the ``gui_action``
   element (text; its box too when it was boxed by its text), action points that fell off a
   shrunk element, the instruction's wording, and the ``image_to_code`` HTML.

Only pixels inside the painted box change. Matching is on the whole text of a region (case
insensitive for Latin, the replacement taking the old text's case style); words inside a longer
line are left alone, since their boxes are unknown.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

from qwen_dataset.augment.registry import AugmentationRejected, AugmentedFrame, Labels
from qwen_dataset.geometry import box_center, boxes_overlap, contains_point
from qwen_dataset.payloads import iter_boxes
from qwen_dataset.samples.drawing import FONT_REQUIREMENT, load_font
from qwen_dataset.text import guess_language

DEFAULT_REPLACEMENTS: dict[str, tuple[str, ...]] = {
    "Submit": ("Send", "Confirm", "Apply"),
    "Send": ("Submit",),
    "Cancel": ("Close", "Dismiss"),
    "Close": ("Cancel",),
    "OK": ("Confirm", "Done"),
    "Confirm": ("OK",),
    "Search": ("Find", "Go"),
    "Find": ("Search",),
    "Save": ("Store", "Keep"),
    "Delete": ("Remove",),
    "Remove": ("Delete",),
    "Login": ("Sign in",),
    "Log in": ("Sign in",),
    "Sign in": ("Log in",),
    "Sign up": ("Register",),
    "Register": ("Sign up",),
    "Next": ("Continue",),
    "Continue": ("Next",),
    "Back": ("Previous",),
    "Settings": ("Preferences",),
    "Export": ("Download",),
    "Checkout": ("Pay now",),
    "提交": ("发送", "确认"),
    "发送": ("提交",),
    "取消": ("关闭", "返回"),
    "关闭": ("取消",),
    "确定": ("确认", "好的"),
    "确认": ("确定",),
    "搜索": ("查找",),
    "查找": ("搜索",),
    "保存": ("存储",),
    "删除": ("移除",),
    "登录": ("登入",),
    "注册": ("创建账号",),
    "设置": ("选项",),
    "下一步": ("继续",),
    "返回": ("后退",),
    "导出": ("下载",),
    "结算": ("去付款",),
}

# Roles boxed by their control (a button's box is the button): their text is found inside.
CONTROL_ROLES = frozenset(
    {"button", "input", "dropdown", "tab", "menu_item", "list_item", "checkbox", "radio", "switch"}
)
CENTRED_ROLES = frozenset({"button", "tab"})
RING_PX = 3  # width of the surround read to estimate the background of an OCR box
INK_THRESHOLD = 48  # max channel difference from the background that counts as ink
FLAT_SPREAD = 24  # 90th percentile of the surround's deviation under which a plain fill is used
INPAINT_MARGIN = 8


@dataclass
class _Candidate:
    old: str
    options: tuple[str, ...]
    box: tuple[int, int, int, int]  # integer pixels to repaint, x2/y2 exclusive
    surround: tuple[int, int, int, int]  # box whose pixels outside ``box`` show the background
    centred: bool


class TextReplacement:
    """Replace labelled UI texts with other words (see the module docstring).

    Args:
        replacements: old text -> new text or list of choices; defaults to a small bilingual
            table of UI words (:data:`DEFAULT_REPLACEMENTS`).
        max_replacements: how many different texts of one frame are replaced per draw.
        min_font_size: a replacement that only fits at a smaller size is not used.
    """

    tasks = frozenset({"ocr", "gui_action", "spatial", "image_to_code"})

    def __init__(
        self,
        replacements: Mapping[str, str | Sequence[str]] | None = None,
        max_replacements: int = 1,
        min_font_size: int = 8,
    ) -> None:
        table = DEFAULT_REPLACEMENTS if replacements is None else replacements
        self.table = {str(old).strip(): _choices(old, new) for old, new in table.items()}
        if not self.table:
            raise ValueError("the replacement table is empty; give at least one 'old text': 'new text' entry")
        self._folded = {old.casefold(): old for old in self.table}
        if int(max_replacements) < 1 or int(min_font_size) < 1:
            raise ValueError("max_replacements and min_font_size must be at least 1")
        self.max_replacements = int(max_replacements)
        self.min_font_size = int(min_font_size)

    def describe(self) -> str:
        return f"qwen_dataset text_replace ({len(self.table)} texts, font {FONT_REQUIREMENT})"

    def lookup(self, text: str) -> tuple[str, ...] | None:
        """Replacement choices for a whole text, in the text's case style; ``None`` if not in the table."""
        key = text.strip()
        original = self.table.get(key) or self.table.get(self._folded.get(key.casefold(), ""))
        if not original:
            return None
        return tuple(match_case(key, choice) for choice in original)

    def apply(self, image: np.ndarray, labels: Sequence[Labels], seed: int) -> AugmentedFrame:
        candidates = find_candidates(image, labels, self)
        if not candidates:
            raise AugmentationRejected(
                f"no labelled text on this frame is in the replacement table ({len(self.table)} texts)"
            )
        rng = np.random.default_rng(seed)
        count = min(self.max_replacements, len(candidates))
        picked = sorted(int(i) for i in rng.choice(len(candidates), size=count, replace=False))
        out_image = image.copy()
        out_labels = copy.deepcopy(list(labels))
        done = []
        for index in picked:
            candidate = candidates[index]
            new_text = candidate.options[int(rng.integers(len(candidate.options)))]
            record = replace_text(out_image, candidate, new_text, self.min_font_size)
            if record is None:
                continue
            update_labels(out_labels, candidate, new_text, record["new_bbox"])
            done.append(record)
        if not done:
            raise AugmentationRejected("no replacement fits its box at a readable font size")
        return AugmentedFrame(out_image, out_labels, {"replacements": done})


def _choices(old: Any, new: str | Sequence[str]) -> tuple[str, ...]:
    choices = (new,) if isinstance(new, str) else tuple(new)
    if not choices or not all(isinstance(c, str) and c.strip() for c in choices):
        raise ValueError(f"replacement for {old!r} must be a non-empty text or list of texts, got {new!r}")
    return tuple(c.strip() for c in choices)


def match_case(old: str, new: str) -> str:
    """Give ``new`` the case style of ``old`` (``SUBMIT`` -> ``SEND``, ``submit`` -> ``send``).

    >>> match_case("SUBMIT", "Send"), match_case("submit", "Send"), match_case("Submit", "send")
    ('SEND', 'send', 'Send')
    """
    if len(old) > 1 and old.isupper():
        return new.upper()
    if old.islower():
        return new.lower()
    if old[:1].isupper() and new[:1].islower():
        return new[:1].upper() + new[1:]
    return new


# --------------------------------------------------------------------------------------------
# Where the texts are
# --------------------------------------------------------------------------------------------


def pixel_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """The integer pixel box covering a float box (x2/y2 exclusive), clipped to the picture."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (max(0, math.floor(x1)), max(0, math.floor(y1)), min(width, math.ceil(x2)), min(height, math.ceil(y2)))


def _grow(box: Sequence[int], by: int, width: int, height: int) -> tuple[int, int, int, int]:
    return (max(0, box[0] - by), max(0, box[1] - by), min(width, box[2] + by), min(height, box[3] + by))


def _centre_inside(inner: Sequence[float], outer: Sequence[float]) -> bool:
    return contains_point(outer, box_center(inner))


def find_candidates(image: np.ndarray, labels: Sequence[Labels], replacement: TextReplacement) -> list[_Candidate]:
    """Texts of the labels that the table can replace, with the pixels to repaint; no two overlap."""
    height, width = image.shape[:2]
    elements = [box.item for item in labels if item.task == "gui_action" for box in iter_boxes(item.task, item.payload)]
    found: list[_Candidate] = []

    def add(candidate: _Candidate) -> None:
        box = candidate.box
        if box[2] - box[0] >= 4 and box[3] - box[1] >= 6 and not any(boxes_overlap(box, c.box) for c in found):
            found.append(candidate)

    for item in labels:
        if item.task != "ocr":
            continue
        for region in (box.item for box in iter_boxes(item.task, item.payload)):
            options = replacement.lookup(str(region.get("text", "")))
            if options is None:
                continue
            box = pixel_box(region["bbox"], width, height)
            centred = any(e.get("role") in CENTRED_ROLES and _centre_inside(box, e["bbox"]) for e in elements)
            add(_Candidate(region["text"].strip(), options, box, _grow(box, RING_PX, width, height), centred))

    for element in elements:
        options = replacement.lookup(str(element.get("text", "")))
        if options is None:
            continue
        control = pixel_box(element["bbox"], width, height)
        if element.get("role") in CONTROL_ROLES:
            inset = int(min(8, max(3, round(0.12 * min(control[2] - control[0], control[3] - control[1])))))
            control = (control[0] + inset, control[1] + inset, control[2] - inset, control[3] - inset)
        ink = locate_ink(image, control)
        if ink is None:
            continue
        box = _grow(ink, 2, width, height)
        box = (max(box[0], control[0]), max(box[1], control[1]), min(box[2], control[2]), min(box[3], control[3]))
        add(_Candidate(element["text"].strip(), options, box, control, element.get("role") in CENTRED_ROLES))
    return found


def _pixels(image: np.ndarray, box: Sequence[int]) -> np.ndarray:
    return image[box[1] : box[3], box[0] : box[2]].reshape(-1, 3)


def locate_ink(
    image: np.ndarray, box: tuple[int, int, int, int], background: np.ndarray | None = None
) -> tuple[int, int, int, int] | None:
    """Tight box of the pixels inside ``box`` that differ from its background (the median colour)."""
    crop = image[box[1] : box[3], box[0] : box[2]].astype(np.int16)
    if crop.size == 0:
        return None
    reference = np.median(crop.reshape(-1, 3), axis=0) if background is None else background
    ink = np.abs(crop - reference.astype(np.int16)).max(axis=2) > INK_THRESHOLD
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    return (box[0] + int(cols[0]), box[1] + int(rows[0]), box[0] + int(cols[-1]) + 1, box[1] + int(rows[-1]) + 1)


def estimate_background(image: np.ndarray, box: Sequence[int], surround: Sequence[int]) -> tuple[np.ndarray, bool]:
    """Median colour of the surround outside ``box`` and whether that surround is flat.

    Falls back to the box's own edge pixels when the surround is empty (a box filling the picture).
    """
    mask = np.ones((surround[3] - surround[1], surround[2] - surround[0]), dtype=bool)
    mask[box[1] - surround[1] : box[3] - surround[1], box[0] - surround[0] : box[2] - surround[0]] = False
    ring = image[surround[1] : surround[3], surround[0] : surround[2]][mask]
    if len(ring) == 0:
        crop = image[box[1] : box[3], box[0] : box[2]]
        ring = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
    median = np.median(ring, axis=0)
    spread = np.percentile(np.abs(ring.astype(np.int16) - median).max(axis=1), 90)
    return median.round().astype(np.uint8), bool(spread <= FLAT_SPREAD)


def ink_colour(original: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Colour of the old text: the median of its most contrasting pixels (not the anti-aliased rim)."""
    pixels = original.reshape(-1, 3).astype(np.int16)
    distance = np.abs(pixels - background.astype(np.int16)).max(axis=1)
    ink = distance > INK_THRESHOLD
    if ink.sum() < 4:
        luma = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
        return np.array([0, 0, 0] if luma > 128 else [255, 255, 255], dtype=np.uint8)
    strong = distance >= np.percentile(distance[ink], 75)
    return np.median(pixels[strong], axis=0).round().astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Painting
# --------------------------------------------------------------------------------------------


def render_ink(text: str, size: int) -> np.ndarray:
    """Alpha mask (0-255) of ``text`` in Noto Sans CJK at ``size`` px, cropped to its ink."""
    font = load_font(size)
    # Whole pixels without a stroke; Pillow types them float for fractional strokes.
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    pad = 2
    mask = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(mask).text((pad - left, pad - top), text, font=font, fill=255)
    ink = mask.getbbox()
    if ink is None:
        raise ValueError(f"text {text!r} renders no ink")
    return np.asarray(mask.crop(ink))


def fit_text(text: str, max_width: int, max_height: int, min_size: int) -> tuple[int, np.ndarray] | None:
    """Largest font size whose ink fits ``max_width`` x ``max_height``; ``None`` below ``min_size``."""
    low, high, best = min_size, max(min_size, 2 * max_height + 2), None
    while low <= high:
        size = (low + high) // 2
        mask = render_ink(text, size)
        if mask.shape[1] <= max_width and mask.shape[0] <= max_height:
            best, low = (size, mask), size + 1
        else:
            high = size - 1
    return best


def _paint_background(
    image: np.ndarray, box: Sequence[int], surround: Sequence[int], background: np.ndarray, flat: bool
) -> None:
    x1, y1, x2, y2 = box
    if flat:
        image[y1:y2, x1:x2] = background
        return
    height, width = image.shape[:2]
    area = _grow(surround, INPAINT_MARGIN, width, height)
    patch = np.ascontiguousarray(image[area[1] : area[3], area[0] : area[2]])
    mask = np.zeros(patch.shape[:2], dtype=np.uint8)
    mask[y1 - area[1] : y2 - area[1], x1 - area[0] : x2 - area[0]] = 255
    filled = cv2.inpaint(patch, mask, 3, cv2.INPAINT_TELEA)
    image[y1:y2, x1:x2] = filled[y1 - area[1] : y2 - area[1], x1 - area[0] : x2 - area[0]]


def replace_text(image: np.ndarray, candidate: _Candidate, new_text: str, min_font_size: int) -> dict[str, Any] | None:
    """Repaint ``candidate.box`` of ``image`` in place with ``new_text``; ``None`` if it cannot fit.

    Returns the lineage record: old/new text, painted box, new ink box, font size, colours, fill.
    """
    x1, y1, x2, y2 = candidate.box
    background, flat = estimate_background(image, candidate.box, candidate.surround)
    old_ink = locate_ink(image, candidate.box, background.astype(np.float64)) or candidate.box
    original = image[y1:y2, x1:x2].copy()
    colour = ink_colour(original, background)
    fitted = fit_text(new_text, x2 - x1, max(old_ink[3] - old_ink[1], 1), min_font_size)
    if fitted is None:
        return None
    size, alpha_mask = fitted
    ink_h, ink_w = alpha_mask.shape
    _paint_background(image, candidate.box, candidate.surround, background, flat)
    if candidate.centred:
        left = round((old_ink[0] + old_ink[2]) / 2 - ink_w / 2)
    else:
        left = old_ink[0]
    top = round((old_ink[1] + old_ink[3]) / 2 - ink_h / 2)
    left = min(max(left, x1), x2 - ink_w)
    top = min(max(top, y1), y2 - ink_h)
    region = image[top : top + ink_h, left : left + ink_w].astype(np.float32)
    alpha = alpha_mask.astype(np.float32)[:, :, None] / 255.0
    image[top : top + ink_h, left : left + ink_w] = (
        (region * (1 - alpha) + colour.astype(np.float32) * alpha).round().astype(np.uint8)
    )
    return {
        "old": candidate.old,
        "new": new_text,
        "box": [int(v) for v in candidate.box],
        "new_bbox": [float(left), float(top), float(left + ink_w), float(top + ink_h)],
        "font_size": int(size),
        "background": [int(v) for v in background],
        "ink": [int(v) for v in colour],
        "fill": "median" if flat else "inpaint",
    }


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def replace_words(text: str, old: str, new: str) -> str:
    """Replace ``old`` as a whole word (Latin) or as a substring (Chinese, which has no spaces)."""
    if not text or not old:
        return text
    if guess_language(old) in ("zh",):
        return text.replace(old, new)
    return re.sub(rf"(?<!\w){re.escape(old)}(?!\w)", lambda _: new, text)


_HTML_ATTRIBUTES = ("value", "placeholder", "title", "alt", "aria-label")


def replace_in_html(html: str, old: str, new: str) -> tuple[str, int]:
    """Replace ``old`` where it is a whole text node or a visible attribute value; returns (html, count)."""
    node = re.compile(rf"(>\s*){re.escape(old)}(\s*<)")
    html, nodes = node.subn(lambda m: f"{m.group(1)}{new}{m.group(2)}", html)
    attribute = re.compile(rf"""(\b(?:{"|".join(_HTML_ATTRIBUTES)})\s*=\s*["']){re.escape(old)}(["'])""")
    html, attributes = attribute.subn(lambda m: f"{m.group(1)}{new}{m.group(2)}", html)
    return html, nodes + attributes


def _same_text(value: Any, old: str) -> bool:
    return isinstance(value, str) and value.strip().casefold() == old.casefold()


def update_labels(labels: list[Labels], candidate: _Candidate, new_text: str, new_bbox: list[float]) -> None:
    """Point every label that shows the old text at this place to the new text."""
    painted = candidate.box
    for item in labels:
        payload = item.payload
        if item.task == "ocr":
            for region in (box.item for box in iter_boxes(item.task, payload)):
                if _same_text(region.get("text"), candidate.old) and _centre_inside(region["bbox"], painted):
                    region.update(text=new_text, bbox=list(new_bbox), language=guess_language(new_text), confidence=1.0)
        elif item.task == "gui_action":
            _update_gui(payload, candidate, new_text, new_bbox)
        elif item.task == "image_to_code":
            html, count = replace_in_html(payload.get("html", ""), candidate.old, new_text)
            if count == 0:
                raise AugmentationRejected(
                    f"the image_to_code HTML does not show {candidate.old!r}; it cannot be kept consistent"
                )
            payload["html"] = html


def _update_gui(payload: dict[str, Any], candidate: _Candidate, new_text: str, new_bbox: list[float]) -> None:
    painted = candidate.box
    changed: dict[int, tuple[list[float], list[float]]] = {}
    for index, element, *_ in iter_boxes("gui_action", payload):
        if not (_same_text(element.get("text"), candidate.old) and boxes_overlap(element["bbox"], painted)):
            continue
        element["text"] = new_text
        old_box = list(element["bbox"])
        boxed_by_text = element.get("role") not in CONTROL_ROLES and all(
            inner >= outer - 3 if i < 2 else inner <= outer + 3
            for i, (inner, outer) in enumerate(zip(old_box, painted))
        )
        if boxed_by_text:
            element["bbox"] = list(new_bbox)
            changed[index] = (old_box, list(new_bbox))
    for action in payload.get("actions", []):
        moved = changed.get(action.get("target"))
        if moved is None:
            continue
        old_box, new_box = moved
        for key in ("point", "end_point"):
            point = action.get(key)
            if (
                point is not None
                and _centre_inside([*point, *point], old_box)
                and not _centre_inside([*point, *point], new_box)
            ):
                action[key] = [round((new_box[0] + new_box[2]) / 2, 2), round((new_box[1] + new_box[3]) / 2, 2)]
    for key in ("instruction", "requested_instruction"):
        if isinstance(payload.get(key), str):
            payload[key] = replace_words(payload[key], candidate.old, new_text)
