"""The sample inbox batch: every kind of media the pipeline takes, byte-identical for a seed."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TypedDict

import numpy as np
from PIL import Image, ImageOps

from qwen_dataset.prelabel.instructions import INSTRUCTIONS_SUFFIX
from qwen_dataset.samples.broken import BROKEN_REASONS, _broken_files
from qwen_dataset.samples.documents import PDF_DPI, images_to_pdf_bytes, pdf_document, photo_like, rotated_jpeg_bytes
from qwen_dataset.samples.drawing import LIGHT_THEMES, LOW_LIGHT_THEME, png_bytes
from qwen_dataset.samples.scene import draw_scene
from qwen_dataset.samples.screens import SCREENS, screen_dashboard, screen_settings
from qwen_dataset.samples.truth import ImageTruth, PdfTruth, SampleTruth
from qwen_dataset.samples.video import make_h264_video
from qwen_dataset.store.paths import atomic_write_bytes, atomic_write_text

DUPLICATE_OF = {"screen_1_login_copy.png": "screen_1_login.png"}  # the copy sorts after its original
PHOTO_NAME = "photo_rotated.jpg"
LOW_LIGHT_NAME = "lowlight_dashboard.png"
PDF_NAME = "document.pdf"
VIDEO_NAME = "clip.mp4"

#: One instruction per GUI screen, and the text of the element it acts on (the truth's target).
INSTRUCTIONS = {
    "screen_1_login.png": ("点击登录按钮", "登录"),
    "screen_2_search.png": ("搜索商品 Click 搜索", "搜索"),
    "screen_3_checkout.png": ("提交订单 Submit the order", "提交订单"),
    "screen_4_settings.png": ("Cancel the changes", "Cancel"),
    PHOTO_NAME: ("保存设置 Save the settings", "保存"),
    LOW_LIGHT_NAME: ("Export the report", "Export"),
}


class _VideoSpec(TypedDict):
    seconds: float
    fps: int
    width: int
    height: int


VIDEO_SPEC: _VideoSpec = {"seconds": 6.0, "fps": 25, "width": 640, "height": 360}


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
    video = make_h264_video(dest / VIDEO_NAME, seed=rng.randrange(2**31), **VIDEO_SPEC)

    broken = _broken_files(rng, written, (dest / VIDEO_NAME).read_bytes())
    for name, data in broken.items():
        atomic_write_bytes(dest / name, data)

    # Drawn last, so the files before it stay what they were before the scene existed.
    scene, scene_truth = draw_scene(rng)
    written[scene_truth.file_name] = png_bytes(scene)
    atomic_write_bytes(dest / scene_truth.file_name, written[scene_truth.file_name])
    images.append(scene_truth)
    for image in images:
        image.instruction, image.target = INSTRUCTIONS.get(image.file_name, ("", ""))

    files = sorted([*written, VIDEO_NAME, *broken])
    return SampleTruth(
        seed=seed,
        files=files,
        images=images,
        pdfs=[pdf],
        videos=[video],
        broken=dict(BROKEN_REASONS),
        duplicates=dict(DUPLICATE_OF),
    )


def trim_sample_batch(folder: Path, count: int) -> set[str]:
    """Keep the first ``count`` files of a generated batch, the screens and the scene first (files every
    task annotates; the broken ones would all be quarantined); returns the names kept. For tiny runs."""
    files = sorted(
        (p for p in Path(folder).rglob("*") if p.is_file()), key=lambda p: (not p.name.startswith("s"), p.name)
    )
    for extra in files[count:]:
        extra.unlink()
    return {p.name for p in files[:count]}


def write_instruction_file(truth: SampleTruth, inbox: Path, batch: str) -> Path:
    """Write the batch's instruction file beside its folder (:mod:`qwen_dataset.prelabel.instructions`)."""
    path = Path(inbox) / f"{batch}{INSTRUCTIONS_SUFFIX}"
    named = {image.file_name: image.instruction for image in truth.images if image.instruction}
    atomic_write_text(path, json.dumps(named, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
    return path


def upright_image(path: Path) -> Image.Image:
    """Open an image the way its truth is expressed: EXIF orientation applied."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image)


def bt601_mean_luma(image: Image.Image) -> float:
    """Mean BT.601 luma (0-255) of an RGB image."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    return float((pixels @ np.array([0.299, 0.587, 0.114])).mean())
