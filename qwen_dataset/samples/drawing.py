"""Drawing screens with truth: a canvas that remembers the tight ink box of every text it draws, the
bundled Noto Sans CJK font, colour themes and the widgets of a GUI screenshot.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import random
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from qwen_dataset.samples.truth import ImageTruth, TextLine, UIElement, language_of

FONT_PACKAGE = "cvttf_NotoSansCJK_Regular"
FONT_FILE = "NotoSansCJKtc-Regular.otf"
FONT_REQUIREMENT = "cvttf-NotoSansCJK-Regular==1.0"


def cjk_font_path() -> Path:
    """The Noto Sans CJK font file shipped by the ``cvttf-NotoSansCJK-Regular`` package."""
    spec = importlib.util.find_spec(FONT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"The Noto Sans CJK font package is not installed; run `pip install {FONT_REQUIREMENT}`.")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / FONT_FILE
        if candidate.is_file():
            return candidate
    raise RuntimeError(
        f"{FONT_FILE} is missing from the {FONT_PACKAGE} package; reinstall it with "
        f"`pip install --force-reinstall {FONT_REQUIREMENT}`."
    )


@lru_cache(maxsize=32)
def load_font(size: int) -> ImageFont.FreeTypeFont:
    """Noto Sans CJK at ``size`` pixels (covers Latin, Simplified and Traditional Chinese)."""
    return ImageFont.truetype(str(cjk_font_path()), size)


Color = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Theme:
    window: Color
    title_bar: Color
    title_text: Color
    text: Color
    muted: Color
    accent: Color
    accent_text: Color
    input_fill: Color
    input_border: Color
    link: Color
    panel: Color


LIGHT_THEMES = (
    Theme(
        (255, 255, 255),
        (33, 37, 41),
        (255, 255, 255),
        (20, 20, 20),
        (90, 90, 90),
        (0, 92, 197),
        (255, 255, 255),
        (255, 255, 255),
        (120, 120, 120),
        (0, 70, 180),
        (242, 244, 247),
    ),
    Theme(
        (247, 248, 250),
        (24, 64, 120),
        (255, 255, 255),
        (25, 25, 35),
        (85, 85, 95),
        (22, 120, 60),
        (255, 255, 255),
        (255, 255, 255),
        (110, 115, 125),
        (10, 80, 170),
        (232, 236, 242),
    ),
    Theme(
        (252, 250, 245),
        (70, 35, 95),
        (255, 255, 255),
        (30, 25, 20),
        (95, 88, 80),
        (190, 45, 30),
        (255, 255, 255),
        (255, 255, 255),
        (125, 118, 110),
        (150, 40, 120),
        (240, 235, 226),
    ),
)

# Dim everything but keep the text a few dozen levels above the background, as in a photo of a
# screen in a dark room: readable once the contrast is stretched.
LOW_LIGHT_THEME = Theme(
    (9, 10, 13),
    (18, 20, 26),
    (92, 96, 104),
    (78, 82, 90),
    (62, 66, 72),
    (24, 40, 70),
    (112, 122, 140),
    (14, 15, 19),
    (44, 46, 52),
    (60, 80, 120),
    (15, 17, 21),
)


class Canvas:
    """A picture being drawn that remembers the tight ink box of every text it draws."""

    def __init__(self, width: int, height: int, background: Color) -> None:
        self.image = Image.new("RGB", (width, height), background)
        self.draw = ImageDraw.Draw(self.image)
        self.lines: list[TextLine] = []
        self.elements: list[UIElement] = []

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    def text(self, xy: tuple[int, int], text: str, size: int, fill: Color, anchor: str = "la") -> list[float]:
        """Draw one line at integer ``xy`` and record it; returns its ink box."""
        font = load_font(size)
        self.draw.text(xy, text, font=font, fill=fill, anchor=anchor)
        box = ink_bbox(xy, text, font, anchor)
        self.lines.append(TextLine(text=text, bbox=box, language=language_of(text)))
        return box

    def element(self, role: str, text: str, box: Sequence[float]) -> None:
        self.elements.append(UIElement(role=role, text=text, bbox=[float(v) for v in box]))

    def text_width(self, text: str, size: int) -> int:
        left, _, right, _ = self.draw.textbbox((0, 0), text, font=load_font(size))
        return int(right - left)  # whole pixels: Pillow types boxes as float only for fractional strokes

    def truth(self, file_name: str, *, low_light: bool = False, exif_orientation: int = 1) -> ImageTruth:
        return ImageTruth(
            file_name=file_name,
            width=self.width,
            height=self.height,
            lines=list(self.lines),
            elements=list(self.elements),
            low_light=low_light,
            exif_orientation=exif_orientation,
        )


def ink_bbox(xy: tuple[int, int], text: str, font: ImageFont.FreeTypeFont, anchor: str = "la") -> list[float]:
    """The box of the pixels the text really inks when drawn at integer ``xy``.

    ``textbbox`` is the layout box (it includes side bearings and, for some glyphs, a pixel or two
    of air); rendering the same text into a blank mask at the same sub-pixel phase gives the ink.
    """
    scratch = ImageDraw.Draw(Image.new("L", (1, 1)))
    # Whole pixels at an integer xy without a stroke; Pillow types them float for fractional strokes.
    left, top, right, bottom = (int(v) for v in scratch.textbbox(xy, text, font=font, anchor=anchor))
    pad = 4
    mask = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(mask).text((xy[0] - left + pad, xy[1] - top + pad), text, font=font, fill=255, anchor=anchor)
    ink = mask.getbbox()
    if ink is None:
        raise ValueError(f"text {text!r} renders no ink; it cannot be given a box")
    x1, y1, x2, y2 = ink
    return [float(x1 + left - pad), float(y1 + top - pad), float(x2 + left - pad), float(y2 + top - pad)]


# Chinese text breaks between any two characters, but never inside a run of Latin letters or
# digits ("3456", "Qwen"), and a space is only a break opportunity: it is never drawn at a line end.
_ZH_TOKENS = re.compile(r"\s+|[^\s\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+|.")


def wrap_words(text: str, size: int, max_width: int, measure: Callable[[str, int], int]) -> list[str]:
    """Greedy line breaking: by words for English, by characters for Chinese.

    Every line comes back without leading or trailing spaces, so the truth never holds a space
    that is not a visible gap between two pieces of ink.
    """
    if language_of(text) == "zh":
        tokens, joiner = _ZH_TOKENS.findall(text), ""
    else:
        tokens, joiner = text.split(" "), " "
    lines: list[str] = []
    current = ""
    for token in tokens:
        if not current and not token.strip():
            continue  # a space at the start of a line is not drawn
        candidate = f"{current}{joiner}{token}" if current else token
        if current and token.strip() and measure(candidate.rstrip(), size) > max_width:
            lines.append(current.rstrip())
            current = token
        else:
            current = candidate
    if current.strip():
        lines.append(current.rstrip())
    return lines


TITLE_BAR_HEIGHT = 52


def draw_window(canvas: Canvas, theme: Theme, title: str) -> int:
    """Title bar with a title and window controls; returns the y where the content starts."""
    canvas.draw.rectangle((0, 0, canvas.width - 1, TITLE_BAR_HEIGHT - 1), fill=theme.title_bar)
    for index, colour in enumerate(((237, 106, 94), (245, 191, 79), (98, 197, 84))):
        cx = canvas.width - 30 - index * 30
        canvas.draw.ellipse((cx - 8, 18, cx + 8, 34), fill=_dim_like(colour, theme))
    box = canvas.text((24, TITLE_BAR_HEIGHT // 2), title, 22, theme.title_text, anchor="lm")
    canvas.element("title", title, box)
    return TITLE_BAR_HEIGHT


def _dim_like(colour: Color, theme: Theme) -> Color:
    """Window-control colours scaled to the theme's brightness (dark in the low-light theme)."""
    scale = 1.0 if sum(theme.window) > 300 else 0.25
    return (int(colour[0] * scale), int(colour[1] * scale), int(colour[2] * scale))


def draw_label(canvas: Canvas, xy: tuple[int, int], text: str, theme: Theme, size: int = 22) -> list[float]:
    box = canvas.text(xy, text, size, theme.text)
    canvas.element("label", text, box)
    return box


def draw_link(canvas: Canvas, xy: tuple[int, int], text: str, theme: Theme, size: int = 20) -> list[float]:
    box = canvas.text(xy, text, size, theme.link)
    canvas.element("link", text, box)
    return box


def draw_button(
    canvas: Canvas, box: tuple[int, int, int, int], label: str, theme: Theme, primary: bool = True, size: int = 22
) -> None:
    fill = theme.accent if primary else theme.panel
    text_fill = theme.accent_text if primary else theme.text
    outline = None if primary else theme.input_border
    canvas.draw.rounded_rectangle(box, radius=8, fill=fill, outline=outline, width=2)
    centre = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2)
    canvas.text(centre, label, size, text_fill, anchor="mm")
    canvas.element("button", label, [box[0], box[1], box[2] + 1, box[3] + 1])


def draw_input(
    canvas: Canvas, box: tuple[int, int, int, int], value: str, placeholder: str, theme: Theme, size: int = 20
) -> None:
    canvas.draw.rounded_rectangle(box, radius=6, fill=theme.input_fill, outline=theme.input_border, width=2)
    shown, colour = (value, theme.text) if value else (placeholder, theme.muted)
    canvas.text((box[0] + 14, (box[1] + box[3]) // 2), shown, size, colour, anchor="lm")
    canvas.element("input", shown, [box[0], box[1], box[2] + 1, box[3] + 1])


def draw_paragraph(
    canvas: Canvas, x: int, y: int, max_width: int, text: str, theme: Theme, size: int = 20, leading: int = 12
) -> int:
    """Wrapped paragraph, one recorded line per row; returns the y below it."""
    for row in wrap_words(text, size, max_width, canvas.text_width):
        canvas.text((x, y), row, size, theme.text)
        y += size + leading
    return y


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jitter(rng: random.Random, spread: int = 16) -> int:
    return rng.randrange(0, spread + 1)
