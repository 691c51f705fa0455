"""Throughput of the RapidOCR prelabel backend against RapidOCR called directly.

Renders ~10 GUI-like 1280x800 screenshots (title bar, sidebar, form, buttons, paragraphs in
Chinese and English), then times, in this one process and on the same files:

* baseline: ``rapidocr_onnxruntime.RapidOCR(...)(path)`` with the backend's own engine options;
* ours: ``RapidOcrBackend.annotate(frames, "ocr")`` (image loading, box clipping, language guess,
  reading order, payload building on top).

Both are warmed up once and timed image by image, alternating, so a noisy neighbour on a shared
machine hurts both alike.
Prints images/second for each and ours/baseline (1.0 = no overhead; lower is slower).

    .venv/bin/python benchmarks/bench_ocr.py [--images 10] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from qwen_dataset.prelabel.base import FrameInput
from qwen_dataset.prelabel.rapidocr_backend import RapidOcrBackend, load_bgr_image, regions_from_result

SIZE = (1280, 800)
MENU = ["首页 Home", "数据集 Datasets", "标注任务 Tasks", "质检 Review", "导出 Export", "设置 Settings"]
LABELS = ["用户名", "Email address", "项目名称", "Project name", "截止日期 Deadline", "备注 Notes"]
BUTTONS = ["保存", "Cancel", "提交审核", "Submit", "删除", "Export JSONL"]
SENTENCES = [
    "The annotation batch contains screenshots, scanned pages and short videos.",
    "请在提交之前检查所有边界框是否准确覆盖文字区域。",
    "Reviewers arbitrate disagreements between two independent annotators.",
    "导出格式包括 Qwen JSONL、COCO 以及 Label Studio 任务。",
    "Low-light frames are enhanced before the OCR prelabel runs.",
]


def _font(size: int) -> ImageFont.FreeTypeFont:
    spec = importlib.util.find_spec("cvttf_NotoSansCJK_Regular")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the benchmark draws text with Noto Sans CJK: pip install cvttf-NotoSansCJK-Regular==1.0")
    return ImageFont.truetype(
        str(Path(next(iter(spec.submodule_search_locations))) / "NotoSansCJKtc-Regular.otf"), size
    )


def render_screenshot(rng: random.Random) -> Image.Image:
    """A desktop-app-like screen with ~30-40 text lines of mixed Chinese and English."""
    width, height = SIZE
    dark = rng.random() < 0.3
    background, ink, muted, panel = (
        ((30, 31, 34), (230, 230, 230), (160, 160, 165), (45, 46, 50))
        if dark
        else ((250, 250, 252), (25, 25, 30), (100, 100, 110), (235, 238, 243))
    )
    image = Image.new("RGB", SIZE, background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 48), fill=(33, 37, 41))
    draw.text(
        (20, 10), f"Qwen Dataset 标注平台 - batch {rng.randrange(100, 999)}", font=_font(22), fill=(255, 255, 255)
    )
    draw.rectangle((0, 48, 220, height), fill=panel)
    for row, item in enumerate(MENU):
        draw.text((24, 80 + row * 52), item, font=_font(20), fill=ink)
    x, y = 260 + rng.randrange(0, 30), 80 + rng.randrange(0, 20)
    draw.text((x, y), rng.choice(["新建标注项目 New project", "Edit dataset 编辑数据集"]), font=_font(30), fill=ink)
    y += 70
    for label in rng.sample(LABELS, 4):
        draw.text((x, y), label, font=_font(20), fill=muted)
        draw.rectangle((x + 200, y - 6, x + 620, y + 30), outline=muted, fill=background)
        draw.text(
            (x + 212, y), rng.choice(["qwen3-vl-ocr", "张三", "2026-03-01", "screenshots-v2"]), font=_font(18), fill=ink
        )
        y += 60
    for index, label in enumerate(rng.sample(BUTTONS, 3)):
        left = x + index * 170
        draw.rounded_rectangle((left, y, left + 150, y + 44), radius=6, fill=(0, 92, 197))
        draw.text((left + 20, y + 10), label, font=_font(20), fill=(255, 255, 255))
    y += 90
    for sentence in rng.sample(SENTENCES, 4):
        draw.text((x, y), sentence, font=_font(18), fill=ink)
        y += 40
    for row in range(6):
        draw.text(
            (1060, 100 + row * 44),
            f"#{rng.randrange(1000, 9999)}  {rng.choice(['完成', 'Pending', '审核中', 'Rejected'])}",
            font=_font(18),
            fill=ink,
        )
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()

    from rapidocr_onnxruntime import RapidOCR

    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        frames = []
        for index in range(args.images):
            path = Path(folder) / f"screen_{index:02d}.png"
            render_screenshot(rng).save(path)
            frames.append(FrameInput(f"f{index:02d}", "bench", "bench", SIZE[0], SIZE[1], path))

        backend = RapidOcrBackend(intra_op_threads=args.threads)
        direct = RapidOCR(**backend.engine_options)
        # Warm-up: first runs pay ONNX Runtime's one-off allocations on both sides.
        direct(frames[0].image_path)
        list(backend.annotate(frames[:1], "ocr"))

        direct_seconds = ours_seconds = 0.0
        lines = 0
        for _ in range(args.rounds):
            lines = 0
            for frame in frames:
                start = time.perf_counter()
                direct(frame.image_path)
                middle = time.perf_counter()
                (outcome,) = backend.annotate([frame], "ocr")
                direct_seconds += middle - start
                ours_seconds += time.perf_counter() - middle
                lines += len(outcome.payload["regions"]) if outcome.payload else 0

        # Our own work alone, off the engine: loading the image and building the payload.
        raw = [direct(frame.image_path)[0] for frame in frames]
        start = time.perf_counter()
        for frame, result in zip(frames, raw):
            load_bgr_image(frame.image_path)
            regions_from_result(result, frame.width, frame.height)
        own_ms = (time.perf_counter() - start) / len(frames) * 1000

    count = args.images * args.rounds
    direct_rate, ours_rate = count / direct_seconds, count / ours_seconds
    print(
        f"images: {args.images} x {args.rounds} rounds, {SIZE[0]}x{SIZE[1]}, {lines / args.images:.1f} text lines/image, "
        f"{args.threads} intra-op threads, {backend.version}"
    )
    print(f"RapidOCR direct      : {direct_rate:.3f} images/s")
    print(f"RapidOcrBackend      : {ours_rate:.3f} images/s")
    print(f"ratio ours/direct    : {ours_rate / direct_rate:.3f}")
    print(
        f"our own work/image   : {own_ms:.1f} ms (image load + payload), {own_ms / 1000 * direct_rate:.1%} of a direct call"
    )


if __name__ == "__main__":
    main()
