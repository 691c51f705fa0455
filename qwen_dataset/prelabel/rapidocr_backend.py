"""CPU OCR prelabels with RapidOCR (PP-OCRv4 detection + recognition on ONNX Runtime).

The ONNX models ship inside the ``rapidocr-onnxruntime`` wheel, so nothing is downloaded at run
time. The backend implements :class:`qwen_dataset.prelabel.base.PrelabelBackend` for the ``ocr``
task and yields one :class:`PrelabelOutcome` per frame; a frame that cannot be read or recognised
becomes a failure outcome with a reason, never an exception that stops the batch.

Payload of an ``ocr`` outcome::

    {"regions": [{"bbox": [x1, y1, x2, y2],   # float pixels of the frame
                  "text": "...", "confidence": 0.97,
                  "language": "zh" | "en" | "mixed" | "other",
                  "font_style": "regular",
                  "reading_order": 0}, ...]}      # the list itself is in reading order
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import os
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from PIL import Image, ImageOps

from qwen_dataset.geometry import clip_box, is_valid_box, quad_to_box
from qwen_dataset.prelabel.base import FrameInput, PrelabelBackend, PrelabelOutcome
from qwen_dataset.records import Task
from qwen_dataset.text import guess_language, reading_order

if TYPE_CHECKING:
    from rapidocr_onnxruntime import RapidOCR

PACKAGE = "rapidocr-onnxruntime"
MODULE = "rapidocr_onnxruntime"

# RapidOCR only recognises characters; it has no notion of weight or slant.
FONT_STYLE = "regular"


def installed_version() -> str:
    """Version of the installed ``rapidocr-onnxruntime`` distribution."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(
            f"{PACKAGE} is not installed; install the project's pinned dependencies "
            f"(pip install -e .) to use the RapidOCR backend"
        ) from exc


@lru_cache(maxsize=1)
def bundled_model_names() -> dict[str, str]:
    """Names of the det/cls/rec ONNX models in the installed wheel, read from its config.yaml.

    Read without importing the package (which loads OpenCV and ONNX Runtime), so asking for a
    backend's ``version`` stays cheap.
    """
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{PACKAGE} is not installed; install the project's pinned dependencies")
    config_path = Path(next(iter(spec.submodule_search_locations))) / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    return {stage.lower(): Path(config[stage]["model_path"]).stem for stage in ("Det", "Cls", "Rec")}


def load_bgr_image(path: Path) -> np.ndarray:
    """Read an image as the contiguous 8-bit BGR array RapidOCR expects.

    EXIF orientation is applied, and transparent pixels are laid on white, as an image viewer
    shows them (dropping the alpha channel would turn them black and hide dark text).
    """
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image)
        if upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info:
            rgba = upright.convert("RGBA")
            upright = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
        rgb = upright.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])


def regions_from_result(result: Sequence[Sequence[Any]] | None, width: int, height: int) -> list[dict[str, Any]]:
    """Turn RapidOCR's ``[[points, text, score], ...]`` (or ``None``) into payload regions.

    Each quad becomes its axis-aligned box clipped to the frame; boxes that are empty after
    clipping and lines with no text are dropped. Regions come back in reading order, and each
    carries its rank in ``reading_order``.
    """
    kept: list[tuple[list[float], str, float]] = []
    for points, text, score in result or ():
        box = [round(v, 2) for v in clip_box(quad_to_box(points), width, height)]
        cleaned = str(text).strip()
        if not cleaned or not is_valid_box(box, width, height):
            continue
        kept.append((box, cleaned, _unit_interval(score)))
    ranks = reading_order([box for box, _, _ in kept])
    regions = [
        {
            "bbox": box,
            "text": text,
            "confidence": confidence,
            "language": guess_language(text),
            "font_style": FONT_STYLE,
            "reading_order": rank,
        }
        for (box, text, confidence), rank in zip(kept, ranks)
    ]
    return sorted(regions, key=lambda region: region["reading_order"])


def _unit_interval(score: Any) -> float:
    value = float(score)
    return 0.0 if math.isnan(value) else min(max(value, 0.0), 1.0)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class RapidOcrBackend(PrelabelBackend):
    """Line-level OCR prelabels on the CPU with RapidOCR.

    ``font_style`` is always ``"regular"``: RapidOCR reports no font information, and a guessed
    style would be noise that a reviewer has to correct; human review fills it in where it
    matters.

    Args:
        text_score: lines recognised with a lower score are dropped (RapidOCR's own filter).
        use_angle_cls: run the text-direction classifier, which turns lines printed upside down
            (photos, scans fed in rotated) before recognition. On by default, as in RapidOCR: it
            adds about 4 % to the time of a 1280x800 screenshot with ~40 lines on 2 cores
            (a 48x192 classifier per line, next to detection at 736 px and recognition at
            48x320). Without it, upside-down lines are read as low-score garbage that ``text_score``
            then drops: a turned picture loses all its text.
        intra_op_threads: ONNX Runtime threads per model, at most the machine's CPU count;
            ``inter_op`` is kept at 1 since the three models run one after another.

    The engine (three ONNX Runtime sessions) is built on first use and reused for every later
    call; RapidOCR keeps no per-call state, so one backend may serve several threads.
    """

    tasks: Sequence[str] = (Task.OCR.value,)

    def __init__(self, text_score: float = 0.5, use_angle_cls: bool = True, intra_op_threads: int = 2) -> None:
        if not 0.0 <= float(text_score) <= 1.0:
            raise ValueError(f"text_score must be between 0 and 1, got {text_score!r}")
        if int(intra_op_threads) < 1:
            raise ValueError(f"intra_op_threads must be at least 1, got {intra_op_threads!r}")
        self.text_score = float(text_score)
        self.use_angle_cls = bool(use_angle_cls)
        # RapidOCR ignores a count above the CPU count and lets ONNX Runtime take every core.
        self.intra_op_threads = min(int(intra_op_threads), os.cpu_count() or 1)
        self._engine: RapidOCR | None = None
        self._engine_lock = threading.Lock()

    @property
    def author(self) -> str:
        return f"{PACKAGE}=={installed_version()}"

    @property
    def version(self) -> str:
        """Package version, models and every parameter that changes the output."""
        models = bundled_model_names()
        cls = models["cls"] if self.use_angle_cls else "off"
        return f"{self.author};det={models['det']};rec={models['rec']};cls={cls};text_score={self.text_score:g}"

    @property
    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments given to ``rapidocr_onnxruntime.RapidOCR`` (also used by the benchmark)."""
        return {
            "text_score": self.text_score,
            "use_cls": self.use_angle_cls,
            "intra_op_num_threads": self.intra_op_threads,
            "inter_op_num_threads": 1,
            "print_verbose": False,
        }

    def engine(self) -> RapidOCR:
        """The RapidOCR engine, built once per backend instance."""
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    self._engine = self._build_engine()
        return self._engine

    def _build_engine(self) -> RapidOCR:
        try:
            from rapidocr_onnxruntime import RapidOCR

            return RapidOCR(**self.engine_options)
        except Exception as exc:
            raise RuntimeError(
                f"could not build the RapidOCR engine ({_describe(exc)}); check that "
                f"{PACKAGE} and onnxruntime are installed at the project's pinned versions"
            ) from exc

    def annotate(self, frames: Sequence[FrameInput], task: str) -> Iterator[PrelabelOutcome]:
        """Yield one outcome per frame, in input order, reading one image at a time."""
        if task not in self.tasks:
            raise ValueError(f"RapidOcrBackend only prelabels {list(self.tasks)}, not {task!r}")
        if not frames:
            return
        engine = self.engine()
        for frame in frames:
            yield self._annotate_one(engine, frame, task)

    def _annotate_one(self, engine: RapidOCR, frame: FrameInput, task: str) -> PrelabelOutcome:
        def failure(error: str) -> PrelabelOutcome:
            return PrelabelOutcome(frame_id=frame.frame_id, task=task, payload=None, error=error)

        try:
            image = load_bgr_image(Path(frame.image_path))
        except Exception as exc:
            return failure(f"could not read image {frame.image_path}: {_describe(exc)}")
        height, width = image.shape[:2]
        if (width, height) != (frame.width, frame.height):
            return failure(
                f"image size mismatch: {frame.image_path} is {width}x{height} but the frame record "
                f"says {frame.width}x{frame.height}; re-extract the frames of upload {frame.upload_id}"
            )
        try:
            result, _elapsed = engine(image)
            regions = regions_from_result(result, frame.width, frame.height)
        except Exception as exc:
            return failure(f"RapidOCR failed on {frame.image_path}: {_describe(exc)}")
        return PrelabelOutcome(frame_id=frame.frame_id, task=task, payload={"regions": regions})

    def __getstate__(self) -> dict[str, Any]:
        # ONNX Runtime sessions and locks do not pickle; a copy builds its own engine on first use.
        state = self.__dict__.copy()
        state["_engine"] = None
        del state["_engine_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._engine_lock = threading.Lock()
