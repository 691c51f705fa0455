"""OCR throughput: worker processes against today's single process, and the backend's own overhead.

Renders GUI-like 1280x800 screenshots (title bar, sidebar, form, buttons, paragraphs in Chinese
and English; ~30-40 lines each), then, in this one command and on the same files:

1. **Scaling.** ``RapidOcrBackend.annotate(frames, "ocr")`` over the whole batch, timed end to end
   (worker start-up and model loading included, as a run pays them), for each engine at
   1 process x ``cores`` threads and at 2 worker processes x ``cores // 2`` threads (and more
   workers with ``--workers``). The baseline is today's figure: ``rapidocr-onnxruntime`` (PP-OCRv4)
   in one process with ``cores`` threads, which is what ``main`` ran before worker processes.
   Configurations take turns, round by round, so a noisy neighbour on a shared machine hurts all
   alike. Prints images/s and the ratio to the baseline.
2. **Overhead.** The default engine called directly against the backend in one process (image
   loading, box clipping, language guess, reading order, payload building on top), image by
   image, alternating. 1.0 = no overhead.

    .venv/bin/python benchmarks/bench_ocr.py [--images 12] [--rounds 2] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import random
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from qwen_dataset.prelabel.base import FrameInput
from qwen_dataset.prelabel.ocr_engines import build_engine
from qwen_dataset.prelabel.ocr_pool import available_cores, plan_processes
from qwen_dataset.prelabel.rapidocr_backend import RapidOcrBackend, load_bgr_image

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


@dataclasses.dataclass(frozen=True)
class Config:
    engine: str
    workers: int
    threads: int

    @property
    def label(self) -> str:
        return f"{self.engine:<21} {self.workers} process(es) x {self.threads} thread(s)"


def configs(cores: int, worker_counts: list[int]) -> list[Config]:
    baseline = Config("rapidocr-onnxruntime", 1, cores)
    found = [baseline]
    for engine in ("rapidocr-onnxruntime", "rapidocr"):
        for workers in worker_counts:
            plan = plan_processes(workers, 0, cores=cores)
            config = Config(engine, plan.workers, plan.threads)
            if config not in found:
                found.append(config)
    return found


def time_batch(config: Config, frames: list[FrameInput]) -> tuple[float, int]:
    """Seconds for one whole annotate call on a fresh backend (start-up included), and lines read."""
    backend = RapidOcrBackend(engine=config.engine, intra_op_threads=config.threads, workers=config.workers)
    start = time.perf_counter()
    outcomes = list(backend.annotate(frames, "ocr"))
    seconds = time.perf_counter() - start
    failed = [outcome.error for outcome in outcomes if outcome.payload is None]
    if failed:
        raise SystemExit(f"{config.label}: {len(failed)} frame(s) failed, e.g. {failed[0]}")
    return seconds, sum(len(outcome.payload["regions"]) for outcome in outcomes)


def scaling(frames: list[FrameInput], rounds: int, worker_counts: list[int]) -> None:
    cores = available_cores()
    table = configs(cores, worker_counts)
    seconds = {config: 0.0 for config in table}
    lines = {}
    for _ in range(rounds):
        for config in table:
            elapsed, lines[config] = time_batch(config, frames)
            seconds[config] += elapsed
    count = len(frames) * rounds
    baseline = count / seconds[table[0]]
    print(f"scaling: {len(frames)} images x {rounds} rounds on {cores} cores, start-up included")
    for config in table:
        rate = count / seconds[config]
        print(
            f"  {config.label}: {rate:.3f} images/s, {rate / baseline:.2f}x today's ({lines[config] / len(frames):.1f} lines/image)"
        )


def overhead(frames: list[FrameInput], rounds: int) -> None:
    backend = RapidOcrBackend(intra_op_threads=available_cores())
    direct = build_engine(backend.settings)
    pictures = [load_bgr_image(frame.image_path) for frame in frames]
    direct(pictures[0])  # warm-up: first runs pay ONNX Runtime's one-off allocations on both sides
    list(backend.annotate(frames[:1], "ocr"))
    direct_seconds = ours_seconds = 0.0
    for _ in range(rounds):
        for frame, picture in zip(frames, pictures):
            start = time.perf_counter()
            direct(picture)
            middle = time.perf_counter()
            list(backend.annotate([frame], "ocr"))
            direct_seconds += middle - start
            ours_seconds += time.perf_counter() - middle
    count = len(frames) * rounds
    print(f"overhead ({backend.version}):")
    print(f"  engine direct  : {count / direct_seconds:.3f} images/s (decoded picture in)")
    print(f"  RapidOcrBackend: {count / ours_seconds:.3f} images/s (file in, payload out)")
    print(f"  ratio ours/direct: {direct_seconds / ours_seconds:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()

    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        frames = []
        for index in range(args.images):
            path = Path(folder) / f"screen_{index:02d}.png"
            render_screenshot(rng).save(path)
            frames.append(FrameInput(f"f{index:02d}", "bench", "bench", SIZE[0], SIZE[1], path))
        scaling(frames, args.rounds, args.workers)
        if not args.skip_overhead:
            overhead(frames, 1)


if __name__ == "__main__":
    main()
