"""Text helpers shared by the OCR prelabel backends, the quality gates and the exporters.

* :func:`guess_language` labels a string ``zh`` / ``en`` / ``mixed`` / ``other`` from the Unicode
  scripts of its letters.
* :func:`reading_order` ranks text boxes the way a person reads a page written left to right:
  boxes are grouped into lines, lines are read top to bottom, boxes left to right within a line.
* :func:`normalize_text` is the form in which OCR texts are compared: the text as exported, NFKC
  folded, each run of whitespace one space, ends trimmed. :func:`strip_whitespace` is the same with
  every space removed, for the figure that ignores spacing.

Both are pure functions with no dependency beyond the standard library.

>>> guess_language("发票 Invoice 2024")
'mixed'
>>> reading_order([[200, 10, 300, 30], [10, 12, 100, 28], [10, 50, 90, 70]])
[1, 0, 2]
>>> normalize_text("  欢迎回来\u3000 Welcome  back ")
'欢迎回来 Welcome back'
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

LANGUAGES = ("zh", "en", "mixed", "other")

# Two boxes share a line when their vertical overlap covers at least this share of the shorter box.
# For boxes of equal height h that is "centers at most h/2 apart", i.e. one box's center lies
# within the other's line height; text on consecutive lines overlaps far less than this.
SAME_LINE_OVERLAP = 0.5


def normalize_text(text: str) -> str:
    """The text as a trainer sees it, in comparable form: NFKC, whitespace runs as one space, trimmed.

    Spaces are kept because a model fine-tuned on ``欢迎回来Welcomeback`` learns to glue words
    together; only their amount and kind (tabs, newlines, U+3000 ideographic space) are folded,
    since one space and two look alike on a screen. NFKC folds full-width forms (``ＡＢＣ``,
    ``？``) to their ASCII twins and splits ligatures.

    >>> normalize_text("ＯＫ\t 按钮")
    'OK 按钮'
    """
    return " ".join(unicodedata.normalize("NFKC", text).split())


def strip_whitespace(text: str) -> str:
    """NFKC with every whitespace character removed: the figure that forgives spacing errors.

    >>> strip_whitespace("发 票 号 码")
    '发票号码'
    """
    return "".join(unicodedata.normalize("NFKC", text).split())


def collapse_whitespace(text: str) -> str:
    """Each whitespace run as one space, ends trimmed; characters otherwise left as they are.

    What the OCR backends store: full-width punctuation stays (it is correct Chinese text), only
    stray spacing is tidied.
    """
    return " ".join(text.split())


@lru_cache(maxsize=4096)
def _script_of(char: str) -> str | None:
    """``han``, ``latin`` or ``other`` for a letter; ``None`` for digits, punctuation, spaces."""
    name = unicodedata.name(char, "")
    if name.startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH")):
        return "han"
    if not unicodedata.category(char).startswith("L"):
        return None
    # Covers ASCII, accented letters (é, ß) and fullwidth Latin (Ａ) alike.
    if name.startswith(("LATIN ", "FULLWIDTH LATIN ")):
        return "latin"
    return "other"


def guess_language(text: str) -> str:
    """Guess the language of an OCR line from the scripts of its letters.

    Only letters count: digits, punctuation and symbols are shared by every language.

    * ``zh``: Han ideographs only;
    * ``en``: Latin letters only (English is the only Latin-script language the templates use);
    * ``mixed``: both Han and Latin letters;
    * ``other``: no letters at all (``"12:30"``), or any letter of another script — kana or
      Hangul mark Japanese or Korean even when Han characters are present.

    >>> [guess_language(t) for t in ("你好", "Hello", "Wi-Fi 设置", "2024-01-01", "東京タワー")]
    ['zh', 'en', 'mixed', 'other', 'other']
    """
    scripts = {script for script in map(_script_of, text) if script is not None}
    if scripts == {"han"}:
        return "zh"
    if scripts == {"latin"}:
        return "en"
    if scripts == {"han", "latin"}:
        return "mixed"
    return "other"


@dataclass
class _Line:
    """A line under construction: member box indices and its mean top/bottom edge."""

    members: list[int] = field(default_factory=list)
    top_sum: float = 0.0
    bottom_sum: float = 0.0

    @property
    def top(self) -> float:
        return self.top_sum / len(self.members)

    @property
    def bottom(self) -> float:
        return self.bottom_sum / len(self.members)

    def add(self, index: int, top: float, bottom: float) -> None:
        self.members.append(index)
        self.top_sum += top
        self.bottom_sum += bottom


def _vertical_overlap_ratio(top_a: float, bottom_a: float, top_b: float, bottom_b: float) -> float:
    """Vertical overlap as a share of the shorter of the two spans (0 when they do not overlap)."""
    overlap = min(bottom_a, bottom_b) - max(top_a, top_b)
    shorter = min(bottom_a - top_a, bottom_b - top_b)
    if overlap <= 0:
        return 0.0
    if shorter <= 0:  # a zero-height box inside the other's span
        return 1.0
    return overlap / shorter


def group_lines(boxes: Sequence[Sequence[float]]) -> list[list[int]]:
    """Group ``[x1, y1, x2, y2]`` boxes into text lines; returns box indices in reading order.

    Boxes are visited by vertical center; each joins the existing line it overlaps most (at
    least :data:`SAME_LINE_OVERLAP` of the shorter height), else it starts a new line. Lines
    compare by their mean top/bottom edge, so one tall box cannot chain two lines together.
    The lines come back top to bottom, each one's boxes left to right.

    >>> group_lines([[120, 0, 200, 20], [0, 2, 100, 22], [0, 40, 100, 60]])
    [[1, 0], [2]]
    """
    spans = [(float(box[1]), float(box[3])) for box in boxes]
    by_center = sorted(range(len(boxes)), key=lambda i: ((spans[i][0] + spans[i][1]) / 2, float(boxes[i][0])))
    lines: list[_Line] = []
    for index in by_center:
        top, bottom = spans[index]
        best, best_ratio = None, 0.0
        for line in lines:
            ratio = _vertical_overlap_ratio(top, bottom, line.top, line.bottom)
            if ratio >= SAME_LINE_OVERLAP and ratio > best_ratio:
                best, best_ratio = line, ratio
        if best is None:
            best = _Line()
            lines.append(best)
        best.add(index, top, bottom)
    lines.sort(key=lambda line: (line.top + line.bottom) / 2)
    return [sorted(line.members, key=lambda i: (float(boxes[i][0]), float(boxes[i][2]))) for line in lines]


def reading_order(boxes: Sequence[Sequence[float]]) -> list[int]:
    """Rank of each ``[x1, y1, x2, y2]`` box in reading order (0 = read first), in input order.

    >>> reading_order([[0, 50, 10, 60], [0, 0, 10, 10]])
    [1, 0]
    """
    ranks = [0] * len(boxes)
    position = 0
    for line in group_lines(boxes):
        for index in line:
            ranks[index] = position
            position += 1
    return ranks
