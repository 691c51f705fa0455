"""Export speed and memory per format, each against the floor of writing its own bytes.

Builds, seeded, a frames manifest and an annotations manifest of ``N`` frames with ``--boxes``
boxes each (default 10): OCR regions (random sizes, boxes inside their frame, mixed
Chinese/English texts, reading orders shuffled) and, for the Action DSL, GUI elements with three
actions per frame. Then, for every size given in ``--samples`` (default ``2000,20000``) and every
format, in this one run:

* **ours**: the exporter, from the manifests to the file (:func:`export_qwen_jsonl`,
  :func:`export_messages_jsonl`, :func:`export_trl_parquet`, :func:`export_coco`,
  :func:`export_csv`, :func:`export_label_studio`, and the bundle's :func:`write_action_dsl`);
* **bundle**: a dataset folder of the OCR task through the bundle (:func:`write_dataset_formats`:
  every format above but the DSL, written together, each payload parsed once for all);
* **floor**: the same final objects, parsed back from the file ours wrote and held in memory as
  Python objects before the clock starts, dumped and written again: ``orjson.dumps`` of each line
  (JSONL) or of the whole document (COCO, Label Studio); the TRL rows converted by
  ``pyarrow.Table.from_pylist`` and written by ``pyarrow.parquet.write_table``; the CSV's cells,
  in an Arrow table of strings (empty cells null), written by ``pyarrow.csv.write_csv`` with
  ours' line end; the DSL text's bytes; flushed and fsynced as ours is (for the bundle: every
  file it wrote, each so). It is the least any exporter has to spend on that file's bytes. The
  CSV floor starts from Arrow columns, not Python cells: pyarrow's conversion of 5 million
  Python strings (a second) is no cost of writing the bytes, and pyarrow cannot write the csv
  module's minimal quoting, so the floor quotes every non-empty cell (9 % more bytes than ours).

Each run happens in a child forked from the process holding the manifests, so every run starts
from the same memory; the child resets its peak-RSS counter (``/proc/self/clear_refs``) and
reports its wall time and its peak RSS above what it started with (``VmHWM - VmRSS``): the memory
the export itself needed, manifests excluded. Ours and its floor alternate ``--rounds`` times and
each keeps its best time (the machine may be shared); wall time and CPU time (the child's,
all threads) are both reported, CPU time being the steadier of the two on a busy machine. A line is printed, and flushed, as each
format finishes; the summary at the end gives, per format, ``ours / floor`` at each size and the
peak extra memory at each size (flat when the export streams).

The benchmark uses only the exporters' public functions, so the same file measures another
checkout: ``PYTHONPATH=/path/to/other/checkout python benchmarks/bench_exports.py``.

    .venv/bin/python benchmarks/bench_exports.py [--samples 2000,20000] [--boxes 10] [--seed 0]
        [--formats qwen_jsonl,messages,trl,coco,csv,label_studio,action_dsl,bundle] [--rounds 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import gc
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from PIL import Image

from qwen_dataset.exporters.bundle import DatasetMedia, write_action_dsl, write_dataset_formats
from qwen_dataset.exporters.coco import export_coco
from qwen_dataset.exporters.csv_export import export_csv
from qwen_dataset.exporters.label_studio.export import export_label_studio
from qwen_dataset.exporters.messages import export_messages_jsonl
from qwen_dataset.exporters.qwen_jsonl import export_qwen_jsonl
from qwen_dataset.exporters.trl import export_trl_parquet
from qwen_dataset.records import AnnotationRecord, FrameRecord, columns_of

SIZES = [(1920, 1080), (1280, 800), (800, 1200), (2480, 3508), (1366, 768)]
WORDS = [
    "营业收入",
    "同比增长",
    "数据标注平台",
    "质检报告",
    "Quarterly",
    "report",
    "Revenue",
    "Export JSONL",
    "提交审核",
    "Submit",
    "Settings",
    "用户名",
    "Email address",
    "2024",
    "12%",
    '"quoted"',
    "a, b",
    "Total:",
]
ROLES = ["button", "input", "link", "checkbox", "text"]
DEFAULT_FORMATS = "qwen_jsonl,messages,trl,coco,csv,label_studio,action_dsl,bundle"


def image_ref(frame_id: str) -> str:
    return f"images/{frame_id}.png"


def _frames(samples: int, rng: np.random.Generator, upload: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    frame_ids = [f"{upload[:16]}-{index:06d}" for index in range(samples)]
    size_index = rng.integers(0, len(SIZES), samples)
    widths = np.array([SIZES[i][0] for i in size_index])
    heights = np.array([SIZES[i][1] for i in size_index])
    frames = pd.DataFrame(
        {
            "frame_id": frame_ids,
            "upload_id": upload,
            "batch": "bench",
            "kind": "image",
            "index": np.arange(samples),
            "page": None,
            "t": None,
            "width": widths,
            "height": heights,
            "blob_uri": "",
            "low_light": False,
            "mean_luma": 120.0,
            "enhanced_uri": "",
        },
        columns=columns_of(FrameRecord),
    )
    return frames, widths, heights


def _boxes(rng: np.random.Generator, widths: np.ndarray, heights: np.ndarray, boxes: int) -> list[list[float]]:
    total = len(widths) * boxes
    w = np.repeat(widths, boxes).astype(float)
    h = np.repeat(heights, boxes).astype(float)
    x1 = rng.uniform(0, 0.8, total) * w
    y1 = rng.uniform(0, 0.9, total) * h
    x2 = np.minimum(x1 + rng.uniform(0.05, 0.2, total) * w, w)
    y2 = np.minimum(y1 + rng.uniform(0.01, 0.08, total) * h, h)
    return np.round(np.stack([x1, y1, x2, y2], axis=1), 2).tolist()  # type: ignore[no-any-return]


def _annotations(frames: pd.DataFrame, task: str, payloads: list[str], prefix: str) -> pd.DataFrame:
    samples = len(frames)
    return pd.DataFrame(
        {
            "annotation_id": [f"{prefix}{index:022x}" for index in range(samples)],
            "frame_id": frames["frame_id"].tolist(),
            "upload_id": frames["upload_id"].tolist(),
            "batch": "bench",
            "task": task,
            "source": "ai",
            "author": "rapidocr" if task == "ocr" else "qwen3-vl",
            "template_version": "1.0",
            "created_at": "2026-01-01T00:00:00+00:00",
            "status": "ok",
            "error": "",
            "payload": payloads,
            "reviewed": False,
        },
        columns=columns_of(AnnotationRecord),
    )


def synthetic_manifests(samples: int, boxes: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Frames and OCR annotations, ``samples`` x ``boxes`` regions, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    frames, widths, heights = _frames(samples, rng, "b" * 64)
    coords = _boxes(rng, widths, heights, boxes)
    total = samples * boxes
    confidences = np.round(rng.uniform(0.5, 1.0, total), 4).tolist()
    word_picks = rng.integers(0, len(WORDS), (total, 3)).tolist()
    orders = [rng.permutation(boxes).tolist() for _ in range(samples)]
    payloads = []
    for sample in range(samples):
        regions = []
        for offset in range(boxes):
            k = sample * boxes + offset
            text = " ".join(WORDS[i] for i in word_picks[k])
            regions.append(
                {
                    "bbox": coords[k],
                    "text": text,
                    "confidence": confidences[k],
                    "language": "zh" if any("\u4e00" <= c <= "\u9fff" for c in text) else "en",
                    "font_style": "regular",
                    "reading_order": orders[sample][offset],
                }
            )
        payloads.append(orjson.dumps({"regions": regions}, option=orjson.OPT_SORT_KEYS).decode())
    return _annotations(frames, "ocr", payloads, "a0"), frames


def synthetic_gui_manifests(samples: int, boxes: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Frames and GUI action annotations: ``boxes`` elements and three actions per frame."""
    rng = np.random.default_rng(seed + 1)
    frames, widths, heights = _frames(samples, rng, "c" * 64)
    coords = _boxes(rng, widths, heights, boxes)
    payloads = []
    for sample in range(samples):
        elements = [
            {
                "bbox": coords[sample * boxes + k],
                "role": ROLES[k % len(ROLES)],
                "text": WORDS[(sample + k) % len(WORDS)],
            }
            for k in range(boxes)
        ]
        x1, y1, x2, y2 = elements[0]["bbox"]
        actions = [
            {"type": "click", "target": 0, "point": [round((x1 + x2) / 2, 1), round((y1 + y2) / 2, 1)]},
            {"type": "type", "target": 1 % boxes, "text": WORDS[sample % len(WORDS)]},
            {"type": "scroll", "direction": "down"},
        ]
        actions = [
            {"target": None, "point": None, "end_point": None, "text": None, "direction": None, **action}
            for action in actions
        ]
        payload = {"elements": elements, "instruction": f"Open {WORDS[sample % len(WORDS)]}", "actions": actions}
        payloads.append(orjson.dumps(payload).decode())
    return _annotations(frames, "gui_action", payloads, "b0"), frames


# --------------------------------------------------------------------------------------------
# The formats and their floors


def _durable(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _jsonl_floor(path: Path) -> Callable[[Path], None]:
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]

    def write(out: Path) -> None:
        with out.open("wb") as handle:
            for record in records:
                handle.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            _durable(handle)

    return write


def _document_floor(path: Path) -> Callable[[Path], None]:
    document = orjson.loads(path.read_bytes())

    def write(out: Path) -> None:
        with out.open("wb") as handle:
            handle.write(orjson.dumps(document))
            _durable(handle)

    return write


def _csv_floor(path: Path) -> Callable[[Path], None]:
    with path.open(encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    # Empty cells as nulls and ours' line end, so pyarrow writes ours' bytes but for the quotes it
    # puts around every other string (it has no minimal quoting).
    table = pa.table({name: pa.array([row[i] or None for row in rows], pa.string()) for i, name in enumerate(header)})
    options = pa_csv.WriteOptions(eol="\r\n")

    def write(out: Path) -> None:
        with out.open("wb") as handle:
            pa_csv.write_csv(table, handle, options)
            _durable(handle)

    return write


def _parquet_floor(path: Path) -> Callable[[Path], None]:
    table = pq.read_table(path)
    rows, schema = table.to_pylist(), table.schema

    def write(out: Path) -> None:
        with out.open("wb") as handle:
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), handle)
            _durable(handle)

    return write


def _text_floor(path: Path) -> Callable[[Path], None]:
    data = path.read_bytes()

    def write(out: Path) -> None:
        with out.open("wb") as handle:
            handle.write(data)
            _durable(handle)

    return write


FLOOR_BY_SUFFIX: dict[str, Callable[[Path], Callable[[Path], None]]] = {
    ".jsonl": _jsonl_floor,
    ".json": _document_floor,
    ".csv": _csv_floor,
    ".parquet": _parquet_floor,
}


def _bundle_files(folder: Path) -> list[Path]:
    """What the bundle wrote into the media folder: everything but the pictures."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.parent.name != "images" and p.name != "tiny.png")


def _folder_floor(folder: Path) -> Callable[[Path], None]:
    """Every file of the bundle written again, each the way its own format's floor writes it."""
    writers = [(p.relative_to(folder), FLOOR_BY_SUFFIX.get(p.suffix, _text_floor)(p)) for p in _bundle_files(folder)]

    def write(out: Path) -> None:
        for relative, writer in writers:
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            writer(out / relative)

    return write


def _write_bundle(annotations: pd.DataFrame, frames: pd.DataFrame, media: Path) -> Any:
    images = {frame_id: image_ref(frame_id) for frame_id in frames["frame_id"].tolist()}
    dataset_media = DatasetMedia(images, {}, lambda path: f"/data/local-files/?d={path}")
    return write_dataset_formats(annotations, frames, media, dataset_media)


@dataclass(frozen=True)
class Format:
    """One export: which data set it reads, how ours writes it, how its floor is prepared."""

    data: str  # "ocr" | "gui"
    ours: Callable[[pd.DataFrame, pd.DataFrame, Path, Path], Any]  # (annotations, frames, out, media_root)
    floor: Callable[[Path], Callable[[Path], None]]  # what ours wrote -> the writer of the same bytes
    in_media: bool = False  # ours writes a folder of files into the media root instead of ``out``


FORMATS: dict[str, Format] = {
    "qwen_jsonl": Format("ocr", lambda a, f, out, _: export_qwen_jsonl(a, f, out, image_ref, task="ocr"), _jsonl_floor),
    "messages": Format(
        "ocr", lambda a, f, out, _: export_messages_jsonl(a, f, out, image_ref, task="ocr"), _jsonl_floor
    ),
    "trl": Format(
        "ocr",
        lambda a, f, out, media: export_trl_parquet(a, f, out, image_ref, task="ocr", media_root=media),
        _parquet_floor,
    ),
    "coco": Format("ocr", lambda a, f, out, _: export_coco(a, f, out, image_ref, task="ocr"), _document_floor),
    "csv": Format("ocr", lambda a, f, out, _: export_csv(a, f, out, image_ref, tasks=["ocr"]), _csv_floor),
    "label_studio": Format(
        "ocr", lambda a, f, out, _: export_label_studio(a, f, out, image_ref, task="ocr"), _document_floor
    ),
    "action_dsl": Format("gui", lambda a, f, out, _: write_action_dsl(a, out, image_ref), _text_floor),
    # A dataset folder of the OCR task: every format above but the DSL, written together.
    "bundle": Format("ocr", lambda a, f, _, media: _write_bundle(a, f, media), _folder_floor, in_media=True),
}


# --------------------------------------------------------------------------------------------
# Measuring


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _measure(work: Callable[[], Any]) -> tuple[float, float, int]:
    """Wall seconds and CPU seconds (this process, all threads) of ``work()``, and the peak RSS it
    added (bytes)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    start_rss = _status_kib("VmRSS")
    started, cpu_started = time.perf_counter(), time.process_time()
    work()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return seconds, cpu, max(0, peak - start_rss) * 1024


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _in_child(work: Callable[[], tuple[float, float, int]]) -> tuple[float, float, int]:
    """Run ``work`` in a forked child (same memory as this process) and return what it measured."""
    # Every child starts from a settled parent: garbage collected and free memory handed back,
    # or the first child after generating the data reuses (or faults in) what the generation left.
    gc.collect()
    _malloc_trim()
    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def child() -> None:
        results.put(work())

    process = context.Process(target=child)
    process.start()
    outcome = results.get()
    process.join()
    if process.exitcode:
        raise RuntimeError(f"a measured run failed in its child process (exit {process.exitcode})")
    return outcome  # type: ignore[no-any-return]


def _floor_run(name: str, written: Path, out: Path) -> tuple[float, float, int]:
    write = FORMATS[name].floor(written)  # parsed before the clock starts
    return _measure(lambda: write(out))


@dataclass
class Result:
    ours: float  # wall seconds
    floor: float
    ours_cpu: float  # CPU seconds: steadier than wall time on a shared machine
    floor_cpu: float
    peak: int
    size: int


def measure_format(
    name: str, manifests: tuple[pd.DataFrame, pd.DataFrame], folder: Path, media: Path, rounds: int
) -> Result:
    """Best-of-``rounds`` seconds of ours and of its floor, ours' peak extra RSS and file size."""
    fmt = FORMATS[name]
    annotations, frames = manifests
    ours_file, floor_out = folder / f"{name}.out", folder / f"{name}.floor"
    written = media if fmt.in_media else ours_file
    if fmt.in_media:
        floor_out.mkdir(exist_ok=True)
    inf = float("inf")
    best = Result(inf, inf, inf, inf, 0, 0)
    for _ in range(rounds):
        seconds, cpu, peak = _in_child(lambda: _measure(lambda: fmt.ours(annotations, frames, ours_file, media)))
        floor, floor_cpu, _ = _in_child(lambda: _floor_run(name, written, floor_out))
        size = sum(p.stat().st_size for p in _bundle_files(media)) if fmt.in_media else ours_file.stat().st_size
        best = Result(
            min(best.ours, seconds),
            min(best.floor, floor),
            min(best.ours_cpu, cpu),
            min(best.floor_cpu, floor_cpu),
            max(best.peak, peak),
            size,
        )
    shutil.rmtree(floor_out) if floor_out.is_dir() else floor_out.unlink(missing_ok=True)
    return best


def _media_root(folder: Path, frames: pd.DataFrame) -> Path:
    """``images/<frame_id>.png`` for every frame: hard links to one 8 x 8 PNG (TRL rows embed the pictures)."""
    media = folder / "media"
    (media / "images").mkdir(parents=True, exist_ok=True)
    source = media / "tiny.png"
    Image.new("RGB", (8, 8), (200, 200, 200)).save(source)
    for frame_id in frames["frame_id"].tolist():
        target = media / image_ref(frame_id)
        if not target.exists():
            os.link(source, target)
    return media


def _warm_up(formats: list[str], data: dict[str, tuple[pd.DataFrame, pd.DataFrame]], folder: Path, media: Path) -> None:
    """Run every format once on a few rows here, so that what it loads on first use (templates,
    modules) is in memory before the children fork and is not counted as its peak."""
    for name in formats:
        annotations, frames = data[FORMATS[name].data]
        FORMATS[name].ours(annotations.head(5), frames, folder / f"{name}.warm", media)
        (folder / f"{name}.warm").unlink(missing_ok=True)


def run_size(samples: int, boxes: int, seed: int, formats: list[str], rounds: int, folder: Path) -> dict[str, Result]:
    started = time.perf_counter()
    data = {"ocr": synthetic_manifests(samples, boxes, seed)}
    if any(FORMATS[name].data == "gui" for name in formats):
        data["gui"] = synthetic_gui_manifests(samples, boxes, seed)
    media = _media_root(folder, data["ocr"][1])
    _warm_up(formats, data, folder, media)
    print(
        f"\n{samples:,} samples x {boxes} boxes = {samples * boxes:,} boxes "
        f"(generated in {time.perf_counter() - started:.1f} s, seed {seed}, best of {rounds})",
        flush=True,
    )
    print(
        f"{'format':<14}{'ours s':>9}{'floor s':>9}{'ours/floor':>12}{'CPU s':>9}{'floor CPU':>10}{'CPU ratio':>10}"
        f"{'file MiB':>10}{'peak extra MiB':>16}",
        flush=True,
    )
    results: dict[str, Result] = {}
    for name in formats:
        result = measure_format(name, data[FORMATS[name].data], folder, media, rounds)
        results[name] = result
        print(
            f"{name:<14}{result.ours:>9.3f}{result.floor:>9.3f}{result.ours / result.floor:>12.2f}"
            f"{result.ours_cpu:>9.3f}{result.floor_cpu:>10.3f}{result.ours_cpu / max(result.floor_cpu, 1e-6):>10.2f}"
            f"{result.size / 2**20:>10.1f}{result.peak / 2**20:>16.1f}",
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> dict[int, dict[str, Result]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--samples", default="2000,20000", help="comma-separated dataset sizes (frames)")
    parser.add_argument("--boxes", type=int, default=10, help="boxes per sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", default=DEFAULT_FORMATS)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best time of each counts")
    parser.add_argument("--keep", type=Path, help="write the files here and keep them (default: a temp dir)")
    args = parser.parse_args(argv)
    formats = [name.strip() for name in args.formats.split(",") if name.strip()]
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        parser.error(f"unknown format(s) {unknown}; choose from {list(FORMATS)}")
    sizes = [int(value) for value in args.samples.split(",") if value.strip()]
    print(
        f"exporters from {Path(sys.modules['qwen_dataset'].__file__ or '').parent}; {os.cpu_count()} CPUs", flush=True
    )

    by_size: dict[int, dict[str, Result]] = {}
    for samples in sizes:
        folder = (args.keep / str(samples)) if args.keep else Path(tempfile.mkdtemp(prefix="bench_exports_"))
        folder.mkdir(parents=True, exist_ok=True)
        try:
            by_size[samples] = run_size(samples, args.boxes, args.seed, formats, args.rounds, folder)
        finally:
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)

    print("\nsummary: ours / floor in wall time and in CPU time, and peak extra MiB, per size", flush=True)
    header = "".join(f"{f'x @ {n:,}':>12}{f'CPU x @ {n:,}':>14}" for n in sizes)
    header += "".join(f"{f'MiB @ {n:,}':>13}" for n in sizes)
    print(f"{'format':<14}{header}")
    for name in formats:
        row = ""
        for n in sizes:
            result = by_size[n][name]
            row += f"{result.ours / result.floor:>12.2f}{result.ours_cpu / max(result.floor_cpu, 1e-6):>14.2f}"
        row += "".join(f"{by_size[n][name].peak / 2**20:>13.1f}" for n in sizes)
        print(f"{name:<14}{row}", flush=True)
    return by_size


if __name__ == "__main__":
    main()
