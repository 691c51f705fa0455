"""Deterministic sample inbox batch with exact ground truth.

:func:`generate_sample_batch` writes one inbox batch of every kind of media the pipeline takes
(GUI screenshots in English and Simplified Chinese, a photo with an EXIF rotation, a low-light
screenshot, a 3-page PDF, a short H.264 video) plus the broken and hostile files the ingest stage
must quarantine, and returns a :class:`SampleTruth` saying what is in each file: every text line
with its tight ink box, every UI element, PDF text in PDF points, video timestamps and scene cuts,
and the quarantine reason expected for each broken file.

The same seed gives byte-identical files (no wall clock, no unseeded randomness), so the truth can
be committed next to tests and the batch regenerated anywhere. Text is rendered with Noto Sans CJK
from the ``cvttf-NotoSansCJK-Regular`` PyPI package, never a system font, so the pixels do not
depend on the machine.

Box convention (see ``DESIGN.md``): ``[x1, y1, x2, y2]`` float pixels, origin top-left, ``x2``/``y2``
exclusive, i.e. the box of pixel columns ``x1 .. x2-1``. PDF boxes are the same in PDF points
(72 per inch) from the page's top-left: render at ``dpi`` and scale by ``dpi / 72``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import random
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps
from pydantic import TypeAdapter

from qwen_dataset.storage import atomic_write_bytes, atomic_write_text, atomic_writer

FONT_PACKAGE = "cvttf_NotoSansCJK_Regular"
FONT_FILE = "NotoSansCJKtc-Regular.otf"
FONT_REQUIREMENT = "cvttf-NotoSansCJK-Regular==1.0"

PDF_DPI = 150
PDF_PAGE_PX = (1240, 1754)  # A4 at 150 DPI
EXIF_ORIENTATION_TAG = 0x0112
# Fixed PDF dates: Pillow would otherwise stamp the wall clock and break byte-identical output.
FIXED_PDF_DATE = time.struct_time((2024, 1, 1, 0, 0, 0, 0, 1, 0))
ENCRYPTED_PDF_PASSWORD = "sample-user-password"
BOMB_SIDE = 30000
CORRUPT_VIDEO_BYTES = 3 * 1024


# --------------------------------------------------------------------------------------------
# Ground truth records
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TextLine:
    """One rendered line of text: a single box, never wrapped inside it."""

    text: str
    bbox: list[float]  # tight around the ink; pixels (images) or PDF points (pages)
    language: str  # "en" | "zh"


@dataclasses.dataclass
class UIElement:
    """A GUI element. Buttons and inputs are boxed by their control; labels, links and titles by
    their text ink."""

    role: str  # button | input | label | link | title
    text: str
    bbox: list[float]


@dataclasses.dataclass
class ImageTruth:
    """An image file; coordinates are those of the upright image (after EXIF transpose)."""

    file_name: str
    width: int
    height: int
    lines: list[TextLine]
    elements: list[UIElement]
    low_light: bool = False
    exif_orientation: int = 1  # as stored in the file; 1 = upright already


@dataclasses.dataclass
class PageTruth:
    page: int  # 1-based
    width_pt: float
    height_pt: float
    lines: list[TextLine]  # bboxes in PDF points from the top-left corner


@dataclasses.dataclass
class PdfTruth:
    file_name: str
    pages: list[PageTruth]
    rendered_dpi: int  # the DPI the generator drew the pages at (informative only)


@dataclasses.dataclass
class VideoTruth:
    """A generated video: frame ``i`` is presented at exactly ``i / fps`` seconds."""

    file_name: str
    width: int
    height: int
    fps: int
    frame_count: int
    duration: float  # frame_count / fps
    scene_cuts: list[float]  # seconds of the first frame of each new scene
    scene_cut_frames: list[int]
    codec: str = "h264"
    pix_fmt: str = "yuv420p"


@dataclasses.dataclass
class SampleTruth:
    """Everything a test needs to know about one generated batch."""

    seed: int
    files: list[str]  # every file written into the batch folder, sorted
    images: list[ImageTruth]
    pdfs: list[PdfTruth]
    videos: list[VideoTruth]
    broken: dict[str, str]  # file name -> reason code the ingest stage must give
    duplicates: dict[str, str]  # duplicate file name -> original file name (sorts before it)

    def image(self, file_name: str) -> ImageTruth:
        """The truth of one image by file name."""
        for image in self.images:
            if image.file_name == file_name:
                return image
        raise KeyError(f"no image named {file_name!r} in this sample batch")


_TRUTH_ADAPTER = TypeAdapter(SampleTruth)


def write_truth(truth: SampleTruth, path: Path) -> None:
    """Write the truth as JSON (atomically: a crash never leaves half a file)."""
    document = json.dumps(dataclasses.asdict(truth), ensure_ascii=False, indent=1, sort_keys=True)
    atomic_write_text(Path(path), document + "\n")


def read_truth(path: Path) -> SampleTruth:
    """Read a truth file written by :func:`write_truth`."""
    return _TRUTH_ADAPTER.validate_json(Path(path).read_bytes())


# --------------------------------------------------------------------------------------------
# Font
# --------------------------------------------------------------------------------------------


def cjk_font_path() -> Path:
    """The Noto Sans CJK font file shipped by the ``cvttf-NotoSansCJK-Regular`` package."""
    spec = importlib.util.find_spec(FONT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"The Noto Sans CJK font package is not installed; run `pip install {FONT_REQUIREMENT}`."
        )
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


def language_of(text: str) -> str:
    """``"zh"`` when the text holds any CJK ideograph or CJK punctuation, else ``"en"``."""
    for char in text:
        code = ord(char)
        if 0x4E00 <= code <= 0x9FFF or 0x3000 <= code <= 0x303F or 0xFF00 <= code <= 0xFFEF:
            return "zh"
    return "en"


# --------------------------------------------------------------------------------------------
# Drawing with truth
# --------------------------------------------------------------------------------------------

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
    Theme((255, 255, 255), (33, 37, 41), (255, 255, 255), (20, 20, 20), (90, 90, 90),
          (0, 92, 197), (255, 255, 255), (255, 255, 255), (120, 120, 120), (0, 70, 180),
          (242, 244, 247)),
    Theme((247, 248, 250), (24, 64, 120), (255, 255, 255), (25, 25, 35), (85, 85, 95),
          (22, 120, 60), (255, 255, 255), (255, 255, 255), (110, 115, 125), (10, 80, 170),
          (232, 236, 242)),
    Theme((252, 250, 245), (70, 35, 95), (255, 255, 255), (30, 25, 20), (95, 88, 80),
          (190, 45, 30), (255, 255, 255), (255, 255, 255), (125, 118, 110), (150, 40, 120),
          (240, 235, 226)),
)

# Dim everything but keep the text a few dozen levels above the background, as in a photo of a
# screen in a dark room: readable once the contrast is stretched.
LOW_LIGHT_THEME = Theme((9, 10, 13), (18, 20, 26), (92, 96, 104), (78, 82, 90), (62, 66, 72),
                        (24, 40, 70), (112, 122, 140), (14, 15, 19), (44, 46, 52), (60, 80, 120),
                        (15, 17, 21))


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
        return right - left

    def truth(self, file_name: str, **extra: object) -> ImageTruth:
        return ImageTruth(
            file_name=file_name, width=self.width, height=self.height,
            lines=list(self.lines), elements=list(self.elements), **extra,  # type: ignore[arg-type]
        )


def ink_bbox(xy: tuple[int, int], text: str, font: ImageFont.FreeTypeFont, anchor: str = "la") -> list[float]:
    """The box of the pixels the text really inks when drawn at integer ``xy``.

    ``textbbox`` is the layout box (it includes side bearings and, for some glyphs, a pixel or two
    of air); rendering the same text into a blank mask at the same sub-pixel phase gives the ink.
    """
    scratch = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = scratch.textbbox(xy, text, font=font, anchor=anchor)
    pad = 4
    mask = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(mask).text((xy[0] - left + pad, xy[1] - top + pad), text, font=font, fill=255, anchor=anchor)
    ink = mask.getbbox()
    if ink is None:
        raise ValueError(f"text {text!r} renders no ink; it cannot be given a box")
    x1, y1, x2, y2 = ink
    return [float(x1 + left - pad), float(y1 + top - pad), float(x2 + left - pad), float(y2 + top - pad)]


def wrap_words(text: str, size: int, max_width: int, measure: Callable[[str, int], int]) -> list[str]:
    """Greedy line breaking: by words for English, by characters for Chinese."""
    tokens = list(text) if language_of(text) == "zh" else text.split(" ")
    joiner = "" if language_of(text) == "zh" else " "
    lines: list[str] = []
    current = ""
    for token in tokens:
        candidate = f"{current}{joiner}{token}" if current else token
        if current and measure(candidate, size) > max_width:
            lines.append(current)
            current = token
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


# --------------------------------------------------------------------------------------------
# GUI widgets
# --------------------------------------------------------------------------------------------

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


def draw_button(canvas: Canvas, box: tuple[int, int, int, int], label: str, theme: Theme,
                primary: bool = True, size: int = 22) -> None:
    fill = theme.accent if primary else theme.panel
    text_fill = theme.accent_text if primary else theme.text
    outline = None if primary else theme.input_border
    canvas.draw.rounded_rectangle(box, radius=8, fill=fill, outline=outline, width=2)
    centre = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2)
    canvas.text(centre, label, size, text_fill, anchor="mm")
    canvas.element("button", label, [box[0], box[1], box[2] + 1, box[3] + 1])


def draw_input(canvas: Canvas, box: tuple[int, int, int, int], value: str, placeholder: str,
               theme: Theme, size: int = 20) -> None:
    canvas.draw.rounded_rectangle(box, radius=6, fill=theme.input_fill, outline=theme.input_border, width=2)
    shown, colour = (value, theme.text) if value else (placeholder, theme.muted)
    canvas.text((box[0] + 14, (box[1] + box[3]) // 2), shown, size, colour, anchor="lm")
    canvas.element("input", shown, [box[0], box[1], box[2] + 1, box[3] + 1])


def draw_paragraph(canvas: Canvas, x: int, y: int, max_width: int, text: str, theme: Theme,
                   size: int = 20, leading: int = 12) -> int:
    """Wrapped paragraph, one recorded line per row; returns the y below it."""
    for row in wrap_words(text, size, max_width, canvas.text_width):
        canvas.text((x, y), row, size, theme.text)
        y += size + leading
    return y


# --------------------------------------------------------------------------------------------
# Screens (content varies with the seed through ``rng``)
# --------------------------------------------------------------------------------------------

USER_NAMES = ("zhang.wei", "li.na", "wang.fang", "alice.chen", "bob.smith", "liu.yang", "chen.jing")
PRODUCTS = (
    ("无线鼠标", "Wireless mouse"), ("机械键盘", "Mechanical keyboard"), ("显示器支架", "Monitor arm"),
    ("降噪耳机", "Noise cancelling headphones"), ("移动硬盘", "Portable SSD"), ("电源适配器", "Power adapter"),
    ("网络摄像头", "Webcam"), ("笔记本电脑包", "Laptop sleeve"),
)
EN_SENTENCES = (
    "Enter your username and password to continue.",
    "Orders placed before 6 pm ship the same day.",
    "Your session expires after thirty minutes of inactivity.",
    "Results are sorted by relevance; use the filters to narrow them down.",
    "Annotations are reviewed by two people before they are released.",
    "Changes are saved automatically every few seconds.",
)
ZH_SENTENCES = (
    "请输入用户名和密码后点击登录。",
    "订单提交后将在二十四小时内发货。",
    "搜索结果按相关度排序，可以使用筛选条件缩小范围。",
    "所有标注在发布前都经过两位审核员检查。",
    "系统每隔几秒钟自动保存您的修改。",
    "如需帮助，请联系在线客服。",
)


def _jitter(rng: random.Random, spread: int = 16) -> int:
    return rng.randrange(0, spread + 1)


def screen_login(rng: random.Random, theme: Theme, size: tuple[int, int] = (1280, 800)) -> Canvas:
    canvas = Canvas(*size, theme.window)
    top = draw_window(canvas, theme, "登录 - Acme Portal")
    x = 120 + _jitter(rng, 40)
    y = top + 60 + _jitter(rng)
    canvas.text((x, y), "欢迎回来 Welcome back", 34, theme.text)
    y += 80
    draw_label(canvas, (x, y), "用户名 Username", theme)
    draw_input(canvas, (x, y + 40, x + 520, y + 92), rng.choice(USER_NAMES), "请输入用户名", theme)
    y += 130
    draw_label(canvas, (x, y), "密码 Password", theme)
    draw_input(canvas, (x, y + 40, x + 520, y + 92), "", "Enter your password", theme)
    y += 140
    draw_button(canvas, (x, y, x + 240, y + 56), "登录", theme)
    draw_button(canvas, (x + 280, y, x + 520, y + 56), "Sign in", theme, primary=False)
    y += 90
    draw_link(canvas, (x, y), "忘记密码?", theme)
    draw_link(canvas, (x + 200, y), "Forgot password?", theme)
    side = x + 640
    draw_paragraph(canvas, side, top + 160, size[0] - side - 60, rng.choice(EN_SENTENCES), theme)
    draw_paragraph(canvas, side, top + 300, size[0] - side - 60, rng.choice(ZH_SENTENCES), theme)
    return canvas


def screen_search(rng: random.Random, theme: Theme, size: tuple[int, int] = (1366, 768)) -> Canvas:
    canvas = Canvas(*size, theme.window)
    top = draw_window(canvas, theme, "商品搜索 Product search")
    x = 60 + _jitter(rng)
    y = top + 40 + _jitter(rng)
    query = rng.choice(PRODUCTS)
    draw_input(canvas, (x, y, x + 760, y + 56), query[0], "搜索商品 Search products", theme, size=22)
    draw_button(canvas, (x + 790, y, x + 960, y + 56), "搜索", theme)
    draw_button(canvas, (x + 990, y, x + 1160, y + 56), "Reset", theme, primary=False)
    y += 100
    canvas.text((x, y), f"找到 {rng.randrange(3, 60)} 个结果", 22, theme.muted)
    y += 50
    for zh, en in rng.sample(PRODUCTS, 4):
        canvas.draw.rectangle((x, y, x + 1160, y + 96), fill=theme.panel)
        draw_label(canvas, (x + 24, y + 14), zh, theme, size=24)
        draw_link(canvas, (x + 24, y + 56), en, theme)
        price = f"¥{rng.randrange(39, 2999)}.00"
        canvas.text((x + 1000, y + 30), price, 24, theme.text)
        y += 116
    return canvas


def screen_checkout(rng: random.Random, theme: Theme, size: tuple[int, int] = (1024, 1366)) -> Canvas:
    canvas = Canvas(*size, theme.window)
    top = draw_window(canvas, theme, "确认订单 Checkout")
    x = 64 + _jitter(rng)
    y = top + 50 + _jitter(rng)
    canvas.text((x, y), "购物车 Shopping cart", 32, theme.text)
    y += 80
    total = 0
    for zh, en in rng.sample(PRODUCTS, 3):
        price = rng.randrange(49, 899)
        total += price
        draw_label(canvas, (x, y), f"{zh} {en}", theme)
        canvas.text((x + 720, y), f"¥{price}", 22, theme.text)
        y += 60
    canvas.draw.line((x, y, x + 860, y), fill=theme.input_border, width=2)
    y += 30
    canvas.text((x, y), f"合计 Total: ¥{total}", 26, theme.text)
    y += 90
    draw_label(canvas, (x, y), "收货地址 Shipping address", theme)
    draw_input(canvas, (x, y + 40, x + 860, y + 96), "", "请输入详细地址", theme)
    y += 140
    draw_label(canvas, (x, y), "备注 Note", theme)
    draw_input(canvas, (x, y + 40, x + 860, y + 96), "Leave at the front desk", "", theme)
    y += 150
    y = draw_paragraph(canvas, x, y, 860, rng.choice(ZH_SENTENCES), theme)
    y = draw_paragraph(canvas, x, y + 10, 860, rng.choice(EN_SENTENCES), theme)
    y += 60
    draw_button(canvas, (x, y, x + 400, y + 64), "提交订单", theme, size=26)
    draw_button(canvas, (x + 460, y, x + 860, y + 64), "Continue shopping", theme, primary=False)
    return canvas


def screen_settings(rng: random.Random, theme: Theme, size: tuple[int, int] = (800, 600)) -> Canvas:
    canvas = Canvas(*size, theme.window)
    top = draw_window(canvas, theme, "设置 Settings")
    x = 48 + _jitter(rng)
    y = top + 36 + _jitter(rng, 10)
    options = [("语言 Language", "简体中文"), ("时区 Time zone", "UTC+08:00"), ("通知 Notifications", "On")]
    for label, value in options:
        draw_label(canvas, (x, y), label, theme)
        draw_input(canvas, (x + 330, y - 10, x + 680, y + 40), value, "", theme)
        y += 80
    y = draw_paragraph(canvas, x, y + 10, 680, rng.choice(EN_SENTENCES), theme)
    draw_button(canvas, (x, y + 30, x + 200, y + 84), "保存", theme)
    draw_button(canvas, (x + 230, y + 30, x + 430, y + 84), "Cancel", theme, primary=False)
    return canvas


def screen_dashboard(rng: random.Random, theme: Theme, size: tuple[int, int] = (1280, 720)) -> Canvas:
    canvas = Canvas(*size, theme.window)
    top = draw_window(canvas, theme, "监控面板 Dashboard")
    x = 60 + _jitter(rng)
    y = top + 40 + _jitter(rng)
    canvas.text((x, y), "今日概览 Today", 30, theme.text)
    y += 80
    for index, (zh, en) in enumerate((("上传", "Uploads"), ("待审核", "Pending review"), ("已发布", "Released"))):
        left = x + index * 380
        canvas.draw.rounded_rectangle((left, y, left + 340, y + 150), radius=10, fill=theme.panel)
        draw_label(canvas, (left + 24, y + 20), f"{zh} {en}", theme)
        canvas.text((left + 24, y + 70), f"{rng.randrange(10, 9999):,}", 44, theme.text)
    y += 200
    draw_paragraph(canvas, x, y, 1100, rng.choice(ZH_SENTENCES), theme)
    draw_button(canvas, (x, y + 80, x + 220, y + 136), "刷新", theme)
    draw_button(canvas, (x + 250, y + 80, x + 470, y + 136), "Export", theme, primary=False)
    return canvas


# --------------------------------------------------------------------------------------------
# Encoders (deterministic bytes)
# --------------------------------------------------------------------------------------------


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def photo_like(image: Image.Image, rng: random.Random) -> Image.Image:
    """A warm tint, a soft vignette and sensor noise: a phone photo of a screen, not a capture."""
    pixels = np.asarray(image, dtype=np.float32)
    height, width = pixels.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = ((xs / width - 0.5) ** 2 + (ys / height - 0.5) ** 2) ** 0.5
    vignette = 1.0 - 0.25 * distance[..., None]
    tint = np.array([1.0, 0.97, 0.9], dtype=np.float32)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0.0, 4.0, pixels.shape).astype(np.float32)
    result = np.clip(pixels * vignette * tint + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(result, "RGB")


def rotated_jpeg_bytes(upright: Image.Image, orientation: int = 6) -> bytes:
    """JPEG whose pixels are stored rotated so that EXIF ``orientation`` restores ``upright``.

    Orientation 6 means "rotate 90 degrees clockwise to display", so the stored pixels are the
    upright picture turned 90 degrees counter-clockwise.
    """
    if orientation != 6:
        raise ValueError("only EXIF orientation 6 is generated")
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


def images_to_pdf_bytes(pages: Sequence[Image.Image], dpi: int, title: str) -> bytes:
    """Pillow's PDF writer with fixed metadata, so the bytes do not depend on the clock."""
    buffer = io.BytesIO()
    first, *rest = pages
    first.save(
        buffer, format="PDF", save_all=True, append_images=rest, resolution=float(dpi), quality=92,
        title=title, creationDate=FIXED_PDF_DATE, modDate=FIXED_PDF_DATE,
    )
    return buffer.getvalue()


def encrypted_pdf_bytes(plain_pdf: bytes, user_password: str, file_id: bytes) -> bytes:
    """A real password-protected PDF (RC4-128, standard security handler, revision 3).

    RC4 is used because AES draws a random IV for every string; ``file_id`` pins the trailer /ID
    that pypdf would otherwise draw from ``secrets``, so the output is byte-identical per seed.
    """
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import ArrayObject, ByteStringObject

    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(plain_pdf)))
    fixed_id = ArrayObject([ByteStringObject(file_id), ByteStringObject(file_id)])
    writer._ID = fixed_id  # noqa: SLF001 - pypdf has no public setter for the file identifier
    writer.encrypt(user_password=user_password, owner_password=user_password + "-owner", algorithm="RC4-128")
    writer._ID = fixed_id  # noqa: SLF001 - encrypt() appends a random second identifier
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit PNG of ``side`` x ``side`` black pixels that compresses to ~100 KB.

    Streamed through zlib row block by row block, so generating it never holds the raw image.
    """
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte "None" + packed bits
    block = row * 256
    compressor = zlib.compressobj(9)
    parts = []
    remaining = side
    while remaining:
        rows = min(remaining, 256)
        parts.append(compressor.compress(block if rows == 256 else row * rows))
        remaining -= rows
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b""))


# --------------------------------------------------------------------------------------------
# PDF document
# --------------------------------------------------------------------------------------------

PDF_PAGES = (
    ("Quarterly Annotation Report", "季度标注报告", (
        "This report summarises the screenshots, documents and videos annotated during the quarter.",
        "本季度共完成截图、文档和视频的标注工作，以下为主要数据。",
        "Batch {n} contained {m} images; every image was checked by two reviewers.",
    )),
    ("数据质量检查", "Quality checks", (
        "边界框的交并比必须大于零点八五，文字识别准确率必须高于百分之九十五。",
        "Boxes must reach an IoU above 0.85 and text recognition must exceed 95 percent accuracy.",
        "第 {n} 批数据中有 {m} 条标注被退回修改。",
    )),
    ("Appendix: Export Formats", "附录：导出格式", (
        "Datasets are exported as Qwen JSONL, COCO, CSV and Label Studio tasks.",
        "坐标统一使用左上角为原点的像素坐标，导出时再转换。",
        "Export {n} took {m} seconds on a single laptop.",
    )),
)


def pdf_document(rng: random.Random) -> tuple[list[Image.Image], list[PageTruth]]:
    """Three A4 pages rendered at 150 DPI; the truth converts every box to PDF points."""
    images: list[Image.Image] = []
    truths: list[PageTruth] = []
    scale = 72.0 / PDF_DPI
    for number, (heading, subheading, paragraphs) in enumerate(PDF_PAGES, start=1):
        canvas = Canvas(*PDF_PAGE_PX, (255, 255, 255))
        theme = LIGHT_THEMES[0]
        x, y = 120, 140 + _jitter(rng, 20)
        canvas.text((x, y), heading, 44, (0, 0, 0))
        y += 80
        canvas.text((x, y), subheading, 32, (40, 40, 40))
        y += 90
        for paragraph in paragraphs:
            text = paragraph.format(n=rng.randrange(1, 99), m=rng.randrange(100, 5000))
            y = draw_paragraph(canvas, x, y, PDF_PAGE_PX[0] - 2 * x, text, theme, size=24, leading=16) + 30
        canvas.text((x, PDF_PAGE_PX[1] - 120), f"第 {number} 页 Page {number} of {len(PDF_PAGES)}", 20, (60, 60, 60))
        images.append(canvas.image.convert("L"))
        truths.append(PageTruth(
            page=number,
            width_pt=PDF_PAGE_PX[0] * scale,
            height_pt=PDF_PAGE_PX[1] * scale,
            lines=[TextLine(line.text, [v * scale for v in line.bbox], line.language) for line in canvas.lines],
        ))
    return images, truths


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------

SCENE_COLOURS: tuple[Color, ...] = (
    (200, 40, 40), (30, 140, 60), (40, 70, 190), (220, 170, 30),
    (140, 50, 160), (20, 150, 160), (230, 110, 30), (230, 80, 140),
)


def scene_cut_frames(frame_count: int, scenes: int) -> list[int]:
    """First frame of every scene after the first, splitting the video into equal parts."""
    return sorted({round(frame_count * k / scenes) for k in range(1, scenes)} - {0, frame_count})


MIN_SCENE_CHANGE = 150  # summed |dRGB| between consecutive scenes: a cut no detector can miss


def _colour_distance(first: Color, second: Color) -> int:
    return sum(abs(a - b) for a, b in zip(first, second))


def _scene_palette(rng: random.Random, scenes: int) -> list[Color]:
    """Scene colours, each far from the one before it."""
    palette: list[Color] = []
    for _ in range(scenes):
        choices = [c for c in SCENE_COLOURS if not palette or _colour_distance(c, palette[-1]) >= MIN_SCENE_CHANGE]
        palette.append(rng.choice(choices))
    return palette


def _scene_background(colour: Color, width: int, height: int, rng: random.Random) -> np.ndarray:
    """A vertical shade of the scene colour with a few darker blocks (RGB), drawn once per scene."""
    shade = np.linspace(1.0, 0.7, height, dtype=np.float32)[:, None, None]
    background = np.broadcast_to(np.array(colour, dtype=np.float32) * shade, (height, width, 3)).copy()
    for _ in range(4):
        w, h = rng.randrange(width // 10, width // 3), rng.randrange(height // 10, height // 3)
        x, y = rng.randrange(0, width - w), rng.randrange(0, height - h)
        background[y:y + h, x:x + w] *= 0.6
    return background.astype(np.uint8)


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """RGB ``(h, w, 3)`` -> planar yuv420p bytes laid out as PyAV wants them, ``(h * 3 // 2, w)``.

    BT.601 limited range in integer arithmetic, chroma averaged over each 2x2 block. Done in
    numpy rather than swscale because swscale's SIMD paths may round differently from one CPU to
    the next, and the video must be byte-identical everywhere.
    """
    height, width = rgb.shape[:2]
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
    pixels = rgb.astype(np.int32)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    luma = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    blocks = pixels[0::2, 0::2] + pixels[0::2, 1::2] + pixels[1::2, 0::2] + pixels[1::2, 1::2]
    rb, gb, bb = blocks[..., 0], blocks[..., 1], blocks[..., 2]  # sums of four pixels
    u = ((-38 * rb - 74 * gb + 112 * bb + 512) >> 10) + 128
    v = ((112 * rb - 94 * gb - 18 * bb + 512) >> 10) + 128
    planes = (luma.reshape(-1), u.reshape(-1), v.reshape(-1))
    return np.concatenate(planes).astype(np.uint8).reshape(height * 3 // 2, width)


# Luma of a grey level, the same integer BT.601 formula as rgb_to_yuv420p uses for R = G = B.
GREY_TO_LUMA = (((220 * np.arange(256, dtype=np.int32) + 128) >> 8) + 16).astype(np.uint8)
NEUTRAL_CHROMA = 128


class Yuv420Frame:
    """A reusable yuv420p picture: a background filled once per scene, grey patches per frame.

    Composing in the encoder's own pixel format means the per-frame overlays cost a table lookup
    instead of a colour conversion of the whole picture (which costs about as much as encoding).
    Overlays are grey so their chroma is neutral and needs no conversion at all.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.buffer = np.zeros((height * 3 // 2, width), dtype=np.uint8)
        # The chroma planes follow the luma plane byte for byte; they need not start on a row.
        flat = self.buffer.reshape(-1)
        luma, chroma = width * height, (width // 2) * (height // 2)
        self.y = flat[:luma].reshape(height, width)
        self.u = flat[luma:luma + chroma].reshape(height // 2, width // 2)
        self.v = flat[luma + chroma:luma + 2 * chroma].reshape(height // 2, width // 2)

    def fill(self, rgb: np.ndarray) -> None:
        self.buffer[:] = rgb_to_yuv420p(rgb)

    def paste_grey(self, grey: np.ndarray, x: int, y: int) -> None:
        """Paste a grey-level patch with its top-left at even ``(x, y)``; its size must be even."""
        height, width = grey.shape
        if x % 2 or y % 2 or width % 2 or height % 2:
            raise ValueError("yuv420p patches need even positions and sizes")
        self.y[y:y + height, x:x + width] = GREY_TO_LUMA[grey]
        chroma = (slice(y // 2, (y + height) // 2), slice(x // 2, (x + width) // 2))
        self.u[chroma] = NEUTRAL_CHROMA
        self.v[chroma] = NEUTRAL_CHROMA

    def to_video_frame(self) -> av.VideoFrame:
        return av.VideoFrame.from_ndarray(self.buffer, format="yuv420p")


def _even(value: int) -> int:
    return value - value % 2


class _TimestampOverlay:
    """Draws ``t=SS.mmm`` and the frame number onto a fixed dark panel; only that panel changes."""

    def __init__(self, width: int, height: int) -> None:
        self.size = max(12, height // 7)
        self.font = load_font(self.size)
        self.small = load_font(max(10, self.size // 2))
        self.x, self.y = _even(width // 20), _even(height // 12)
        self.width = _even(min(width - self.x, int(self.size * 6.0)))
        self.height = _even(min(height - self.y, int(self.size * 2.2)))

    def draw(self, frame: Yuv420Frame, index: int, fps: int) -> None:
        panel = Image.new("L", (self.width, self.height), 16)
        draw = ImageDraw.Draw(panel)
        draw.text((self.size // 4, 0), format_timestamp(index / fps), font=self.font, fill=255)
        draw.text((self.size // 4, int(self.size * 1.35)), f"frame {index:06d}", font=self.small, fill=210)
        frame.paste_grey(np.asarray(panel), self.x, self.y)


def format_timestamp(seconds: float) -> str:
    """What the video shows on a frame presented at ``seconds``: ``t=01.240``."""
    return f"t={seconds:06.3f}"


def _progress_bar(frame: Yuv420Frame, fraction: float) -> None:
    """A bar along the bottom edge that fills up over the whole video: steady motion in every scene."""
    bar_height = _even(max(4, frame.height // 40))
    strip = np.full((bar_height, frame.width), 30, dtype=np.uint8)
    strip[:, : int(frame.width * fraction)] = 250
    frame.paste_grey(strip, 0, frame.height - bar_height)


def make_h264_video(path: Path, seconds: float, fps: int, width: int, height: int, seed: int = 0, *,
                    scenes: int = 3, preset: str = "veryfast", crf: int = 23, threads: int = 2) -> VideoTruth:
    """Encode an H.264 MP4 whose every frame shows its own timestamp, with known scene cuts.

    Frame ``i`` has ``pts = i`` in a ``1/fps`` time base, so it is presented at exactly
    ``i / fps`` seconds; the background colour changes at ``scenes - 1`` equally spaced cuts.
    Frames are composed one at a time in a reused yuv420p buffer (only the timestamp panel and
    the progress bar are redrawn) and streamed into the encoder, so a long 1080p video needs no
    more memory than a short one. ``threads`` is fixed rather than automatic because x264's
    output depends on its thread count: a fixed count keeps the bytes identical across machines.
    The file appears atomically when encoding finishes.
    """
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
    if fps <= 0 or seconds <= 0:
        raise ValueError(f"fps and seconds must be positive, got fps={fps}, seconds={seconds}")
    path = Path(path)
    rng = random.Random(seed)
    frame_count = max(1, round(seconds * fps))
    cuts = scene_cut_frames(frame_count, scenes)
    palette = _scene_palette(rng, len(cuts) + 1)
    overlay = _TimestampOverlay(width, height)
    time_base = Fraction(1, fps)

    with atomic_writer(path) as handle, av.open(handle, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={
            "preset": preset, "crf": str(crf), "threads": str(threads), "g": str(2 * fps),
        })
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        picture = Yuv420Frame(width, height)
        scene = -1
        for index in range(frame_count):
            current = sum(1 for cut in cuts if cut <= index)
            if current != scene:
                scene = current
                picture.fill(_scene_background(palette[scene], width, height, rng))
            overlay.draw(picture, index, fps)
            _progress_bar(picture, index / max(1, frame_count - 1))
            frame = picture.to_video_frame()
            frame.pts, frame.time_base = index, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)

    return VideoTruth(
        file_name=path.name, width=width, height=height, fps=fps, frame_count=frame_count,
        duration=frame_count / fps, scene_cuts=[cut / fps for cut in cuts], scene_cut_frames=cuts,
    )


# --------------------------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------------------------

SCREENS: tuple[tuple[str, Callable[..., Canvas]], ...] = (
    ("screen_1_login.png", screen_login),
    ("screen_2_search.png", screen_search),  # 1366x768: not a multiple of the usual patch sizes
    ("screen_3_checkout.png", screen_checkout),  # portrait
    ("screen_4_settings.png", screen_settings),
)
DUPLICATE_OF = {"screen_1_login_copy.png": "screen_1_login.png"}  # the copy sorts after its original
PHOTO_NAME = "photo_rotated.jpg"
LOW_LIGHT_NAME = "lowlight_dashboard.png"
PDF_NAME = "document.pdf"
VIDEO_NAME = "clip.mp4"
VIDEO_SPEC = {"seconds": 6.0, "fps": 25, "width": 640, "height": 360}

BROKEN_REASONS = {
    "empty.png": "empty",
    "photo.jpg": "unknown_type",
    "truncated.png": "corrupt_image",
    "locked.pdf": "encrypted_pdf",
    "bomb.png": "decompression_bomb",
    "broken_clip.mp4": "corrupt_video",
    "bad\x07name.png": "unsafe_name",
    "..\\..\\evil.png": "unsafe_name",
}


def _small_notice(text: str, rng: random.Random) -> bytes:
    """A small valid PNG (distinct per text) used as the payload of the hostile file names."""
    canvas = Canvas(360, 120, LIGHT_THEMES[0].panel)
    canvas.text((20 + _jitter(rng, 10), 40), text, 24, (20, 20, 20))
    return png_bytes(canvas.image)


def generate_sample_batch(dest: Path, seed: int = 0) -> SampleTruth:
    """Write one inbox batch into the folder ``dest`` and return its ground truth.

    Files already in ``dest`` with other names are left alone; files with the batch's names are
    replaced. The same ``seed`` always gives byte-identical files.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    theme = rng.choice(LIGHT_THEMES)
    images: list[ImageTruth] = []
    written: dict[str, bytes] = {}

    for name, build in SCREENS:
        canvas = build(rng, theme)
        written[name] = png_bytes(canvas.image)
        images.append(canvas.truth(name))

    upright = screen_settings(rng, rng.choice(LIGHT_THEMES), size=(1024, 768))
    written[PHOTO_NAME] = rotated_jpeg_bytes(photo_like(upright.image, rng))
    images.append(upright.truth(PHOTO_NAME, exif_orientation=6))

    dark = screen_dashboard(rng, LOW_LIGHT_THEME)
    written[LOW_LIGHT_NAME] = png_bytes(dark.image)
    images.append(dark.truth(LOW_LIGHT_NAME, low_light=True))

    pages, page_truths = pdf_document(rng)
    written[PDF_NAME] = images_to_pdf_bytes(pages, PDF_DPI, title="Quarterly Annotation Report")
    pdf = PdfTruth(file_name=PDF_NAME, pages=page_truths, rendered_dpi=PDF_DPI)

    for duplicate, original in DUPLICATE_OF.items():
        written[duplicate] = written[original]

    for name, data in written.items():
        atomic_write_bytes(dest / name, data)
    video = make_h264_video(dest / VIDEO_NAME, seed=rng.randrange(2**31), **VIDEO_SPEC)  # type: ignore[arg-type]

    broken = _broken_files(rng, written, (dest / VIDEO_NAME).read_bytes())
    for name, data in broken.items():
        atomic_write_bytes(dest / name, data)

    files = sorted([*written, VIDEO_NAME, *broken])
    return SampleTruth(seed=seed, files=files, images=images, pdfs=[pdf], videos=[video],
                       broken=dict(BROKEN_REASONS), duplicates=dict(DUPLICATE_OF))


def _broken_files(rng: random.Random, written: dict[str, bytes], video: bytes) -> dict[str, bytes]:
    """The bytes of every file in :data:`BROKEN_REASONS`."""
    truncated_source = written["screen_4_settings.png"]
    one_page = images_to_pdf_bytes([Image.new("L", (600, 300), 255)], PDF_DPI, title="locked")
    files = {
        "empty.png": b"",
        "photo.jpg": "This is a note saved with a .jpg name; it is plain text, not a photo.\n".encode(),
        "truncated.png": truncated_source[: len(truncated_source) // 2],
        "locked.pdf": encrypted_pdf_bytes(one_page, ENCRYPTED_PDF_PASSWORD, rng.randbytes(16)),
        "bomb.png": decompression_bomb_png(),
        "broken_clip.mp4": video[:CORRUPT_VIDEO_BYTES],
        "bad\x07name.png": _small_notice("bad name 控制字符", rng),
        "..\\..\\evil.png": _small_notice("path traversal 路径", rng),
    }
    assert files.keys() == BROKEN_REASONS.keys()
    return files


def upright_image(path: Path) -> Image.Image:
    """Open an image the way its truth is expressed: EXIF orientation applied."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image)


def bt601_mean_luma(image: Image.Image) -> float:
    """Mean BT.601 luma (0-255) of an RGB image."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    return float((pixels @ np.array([0.299, 0.587, 0.114])).mean())


__all__ = [
    "ImageTruth", "PageTruth", "PdfTruth", "SampleTruth", "TextLine", "UIElement", "VideoTruth",
    "bt601_mean_luma", "cjk_font_path", "format_timestamp", "generate_sample_batch", "load_font",
    "make_h264_video", "read_truth", "upright_image", "write_truth",
]
