"""The sample photo and PDF: a screen photographed with an EXIF rotation, and a 3-page report
rendered to PDF with its text lines in PDF points.
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from qwen_dataset.samples.drawing import LIGHT_THEMES, Canvas, draw_paragraph, jitter
from qwen_dataset.samples.truth import PageTruth, TextLine

PDF_DPI = 150
PDF_PAGE_PX = (1240, 1754)  # A4 at 150 DPI
EXIF_ORIENTATION_TAG = 0x0112

# Fixed PDF dates: Pillow would otherwise stamp the wall clock and break byte-identical output.
FIXED_PDF_DATE = time.struct_time((2024, 1, 1, 0, 0, 0, 0, 1, 0))


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
        buffer,
        format="PDF",
        save_all=True,
        append_images=rest,
        resolution=float(dpi),
        quality=92,
        title=title,
        creationDate=FIXED_PDF_DATE,
        modDate=FIXED_PDF_DATE,
    )
    return buffer.getvalue()


PDF_PAGES = (
    (
        "Quarterly Annotation Report",
        "季度标注报告",
        (
            "This report summarises the screenshots, documents and videos annotated during the quarter.",
            "本季度共完成截图、文档和视频的标注工作，以下为主要数据。",
            "Batch {n} contained {m} images; every image was checked by two reviewers.",
        ),
    ),
    (
        "数据质量检查",
        "Quality checks",
        (
            "边界框的交并比必须大于零点八五，文字识别准确率必须高于百分之九十五。",
            "Boxes must reach an IoU above 0.85 and text recognition must exceed 95 percent accuracy.",
            "第 {n} 批数据中有 {m} 条标注被退回修改。",
        ),
    ),
    (
        "Appendix: Export Formats",
        "附录：导出格式",
        (
            "Datasets are exported as Qwen JSONL, COCO, CSV and Label Studio tasks.",
            "坐标统一使用左上角为原点的像素坐标，导出时再转换。",
            "Export {n} took {m} seconds on a single laptop.",
        ),
    ),
)


def pdf_document(rng: random.Random) -> tuple[list[Image.Image], list[PageTruth]]:
    """Three A4 pages rendered at 150 DPI; the truth converts every box to PDF points."""
    images: list[Image.Image] = []
    truths: list[PageTruth] = []
    scale = 72.0 / PDF_DPI
    for number, (heading, subheading, paragraphs) in enumerate(PDF_PAGES, start=1):
        canvas = Canvas(*PDF_PAGE_PX, (255, 255, 255))
        theme = LIGHT_THEMES[0]
        x, y = 120, 140 + jitter(rng, 20)
        canvas.text((x, y), heading, 44, (0, 0, 0))
        y += 80
        canvas.text((x, y), subheading, 32, (40, 40, 40))
        y += 90
        for paragraph in paragraphs:
            text = paragraph.format(n=rng.randrange(1, 99), m=rng.randrange(100, 5000))
            y = draw_paragraph(canvas, x, y, PDF_PAGE_PX[0] - 2 * x, text, theme, size=24, leading=16) + 30
        canvas.text((x, PDF_PAGE_PX[1] - 120), f"第 {number} 页 Page {number} of {len(PDF_PAGES)}", 20, (60, 60, 60))
        images.append(canvas.image.convert("L"))
        truths.append(
            PageTruth(
                page=number,
                width_pt=PDF_PAGE_PX[0] * scale,
                height_pt=PDF_PAGE_PX[1] * scale,
                lines=[TextLine(line.text, [v * scale for v in line.bbox], line.language) for line in canvas.lines],
            )
        )
    return images, truths
