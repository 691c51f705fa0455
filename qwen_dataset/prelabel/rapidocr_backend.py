"""CPU OCR prelabels with RapidOCR on ONNX Runtime (PP-OCRv6 by default, PP-OCRv4 selectable).

The engines and their models are in :mod:`qwen_dataset.prelabel.ocr_engines`; their ONNX models
ship inside their wheels, so nothing is downloaded at run time. The backend implements
:class:`qwen_dataset.prelabel.base.PrelabelBackend` for the ``ocr`` task and yields one
:class:`PrelabelOutcome` per frame; a frame that cannot be read or recognised becomes a failure
outcome with a reason, never an exception that stops the batch. With ``workers > 1`` the frames
of a call are read in that many worker processes (:mod:`qwen_dataset.prelabel.ocr_pool`) and the
outcomes come back as they finish, in any order.

Payload of an ``ocr`` outcome::

    {"regions": [{"bbox": [x1, y1, x2, y2],   # float pixels of the frame
                  "text": "...", "confidence": 0.97,
                  "language": "zh" | "en" | "mixed" | "other",
                  "font_style": "regular",
                  "reading_order": 0}, ...]}      # the list itself is in reading order

**Spurious lines.** A recognised line with no letter and no digit of any script (no Unicode
``L*`` or ``N*`` character: ``●``, ``•``, ``|``, ``—``, ``...``) is dropped: it is an icon, a
bullet, a window-control dot or a rule read as text, and a trainer would learn to spot text
where there is none. A lone symbol meant as a label (a ``+`` or ``×`` button) is lost with them;
such icons are GUI elements, labelled by the ``gui_action`` task. The rule's name is part of the
backend's ``version`` (:data:`SPURIOUS_LINE_RULE`).
"""

from __future__ import annotations

import math
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from qwen_dataset.geometry import clip_box, is_valid_box, quad_to_box
from qwen_dataset.prelabel import ocr_engines
from qwen_dataset.prelabel.base import FrameInput, PrelabelBackend, PrelabelOutcome
from qwen_dataset.prelabel.ocr_engines import Engine, EngineSettings, build_engine, engine_models, engine_spec
from qwen_dataset.prelabel.ocr_pool import available_cores, map_in_processes
from qwen_dataset.records import Task
from qwen_dataset.text import collapse_whitespace, guess_language, reading_order

DEFAULT_ENGINE = ocr_engines.RAPIDOCR.name

# RapidOCR only recognises characters; it has no notion of weight or slant.
FONT_STYLE = "regular"

# Named in the backend's version: changing the rule changes the output.
SPURIOUS_LINE_RULE = "no-letter-or-digit"


def is_spurious_line(text: str) -> bool:
    """Whether a recognised line holds no letter and no digit of any script (see the module doc).

    >>> [is_spurious_line(t) for t in ("●", "• •", "—", "...", "OK", "12", "¥", "确定", "×2")]
    [True, True, True, True, False, False, True, False, False]
    """
    return not any(unicodedata.category(char)[0] in "LN" for char in text)


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
    clipping and spurious lines (no letter or digit, :func:`is_spurious_line`) are dropped. Text
    keeps its spaces, each run as one, ends trimmed. Regions come back in reading order, and each
    carries its rank in ``reading_order``.
    """
    kept: list[tuple[list[float], str, float]] = []
    for points, text, score in result or ():
        box = [round(v, 2) for v in clip_box(quad_to_box(points), width, height)]
        cleaned = collapse_whitespace(str(text))
        if is_spurious_line(cleaned) or not is_valid_box(box, width, height):
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


def annotate_frame(engine: Engine, frame: FrameInput, task: str) -> PrelabelOutcome:
    """One frame through ``engine``: its regions, or a failure outcome with the reason."""

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
        regions = regions_from_result(engine(image), frame.width, frame.height)
    except Exception as exc:
        return failure(f"RapidOCR failed on {frame.image_path}: {_describe(exc)}")
    return PrelabelOutcome(frame_id=frame.frame_id, task=task, payload={"regions": regions})


def _engine_error(settings: EngineSettings, exc: BaseException) -> RuntimeError:
    spec = engine_spec(settings.name)
    return RuntimeError(
        f"could not build the {spec.name} OCR engine ({_describe(exc)}); check that "
        f"{spec.package} and onnxruntime are installed at the project's pinned versions"
    )


# --------------------------------------------------------------------------------------------
# Worker processes: one engine per process, built on its first frame.

_worker_settings: EngineSettings | None = None
_worker_engine: Engine | None = None


def _init_worker(settings: EngineSettings) -> None:
    global _worker_settings
    _worker_settings = settings
    # OpenCV's own thread pool would take every core in every worker: keep it to our share.
    import cv2

    cv2.setNumThreads(settings.threads)


def _annotate_in_worker(job: tuple[FrameInput, str]) -> PrelabelOutcome:
    global _worker_engine
    frame, task = job
    if _worker_engine is None:
        assert _worker_settings is not None, "the pool initializer sets the engine settings"
        try:
            _worker_engine = build_engine(_worker_settings)
        except Exception as exc:
            raise _engine_error(_worker_settings, exc) from exc
    return annotate_frame(_worker_engine, frame, task)


def _worker_failure(job: tuple[FrameInput, str], exc: BaseException) -> PrelabelOutcome:
    frame, task = job
    return PrelabelOutcome(
        frame_id=frame.frame_id,
        task=task,
        payload=None,
        error=f"OCR worker process failed on {frame.image_path}: {_describe(exc)}",
    )


class RapidOcrBackend(PrelabelBackend):
    """Line-level OCR prelabels on the CPU with RapidOCR.

    ``font_style`` is always ``"regular"``: RapidOCR reports no font information, and a guessed
    style would be noise that a reviewer has to correct; human review fills it in where it
    matters.

    Args:
        engine: ``"rapidocr"`` (RapidOCR 3, PP-OCRv6 small; the default) or
            ``"rapidocr-onnxruntime"`` (RapidOCR 1.4, PP-OCRv4); see
            :mod:`qwen_dataset.prelabel.ocr_engines` and the README's engine table.
        text_score: lines recognised with a lower score are dropped (RapidOCR's own filter).
        use_angle_cls: run the text-direction classifier, which turns lines printed upside down
            (photos, scans fed in rotated) before recognition. On by default, as in RapidOCR: it
            adds about 4 % to the time of a 1280x800 screenshot with ~40 lines on 2 cores.
            Without it, upside-down lines are read as low-score garbage that ``text_score``
            then drops: a turned picture loses all its text.
        intra_op_threads: ONNX Runtime threads per model in each process, at most the cores.
        workers: processes that read the frames of one ``annotate`` call (1: this process).
            ``workers x intra_op_threads`` should not exceed the cores
            (:func:`qwen_dataset.prelabel.ocr_pool.plan_processes` plans both).

    In this process the engine is built on first use and reused for every later call; RapidOCR
    keeps no per-call state, so one backend may serve several threads. Worker processes build
    their own engine once each and live for one ``annotate`` call.
    """

    tasks: Sequence[str] = (Task.OCR.value,)

    def __init__(
        self,
        text_score: float = 0.5,
        use_angle_cls: bool = True,
        intra_op_threads: int = 2,
        engine: str = DEFAULT_ENGINE,
        workers: int = 1,
    ) -> None:
        if not 0.0 <= float(text_score) <= 1.0:
            raise ValueError(f"text_score must be between 0 and 1, got {text_score!r}")
        if int(intra_op_threads) < 1:
            raise ValueError(f"intra_op_threads must be at least 1, got {intra_op_threads!r}")
        if int(workers) < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        self.engine_name = engine_spec(engine).name
        self.text_score = float(text_score)
        self.use_angle_cls = bool(use_angle_cls)
        # RapidOCR ignores a count above the CPU count and lets ONNX Runtime take every core.
        self.intra_op_threads = min(int(intra_op_threads), available_cores())
        self.workers = int(workers)
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()

    @property
    def settings(self) -> EngineSettings:
        return EngineSettings(self.engine_name, self.text_score, self.use_angle_cls, self.intra_op_threads)

    @property
    def author(self) -> str:
        spec = engine_spec(self.engine_name)
        return f"{spec.package}=={ocr_engines.installed_version(spec)}"

    @property
    def version(self) -> str:
        """Engine package and version, models, and every parameter that changes the output."""
        models = engine_models(self.engine_name)
        cls = models["cls"] if self.use_angle_cls else "off"
        return (
            f"{self.author};det={models['det']};rec={models['rec']};cls={cls};"
            f"text_score={self.text_score:g};drop={SPURIOUS_LINE_RULE}"
        )

    def engine(self) -> Engine:
        """The OCR engine of this process, built once per backend instance."""
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    try:
                        self._engine = build_engine(self.settings)
                    except Exception as exc:
                        raise _engine_error(self.settings, exc) from exc
        return self._engine

    def annotate(self, frames: Sequence[FrameInput], task: str) -> Iterator[PrelabelOutcome]:
        """Yield one outcome per frame, reading one image at a time per process.

        One process (``workers=1``, or a single frame): in input order. Several: in the order the
        workers finish.
        """
        if task not in self.tasks:
            raise ValueError(f"RapidOcrBackend only prelabels {list(self.tasks)}, not {task!r}")
        if not frames:
            return
        if self.workers > 1 and len(frames) > 1:
            yield from map_in_processes(
                ((frame, task) for frame in frames),
                _annotate_in_worker,
                _worker_failure,
                workers=min(self.workers, len(frames)),
                initializer=_init_worker,
                initargs=(self.settings,),
            )
            return
        engine = self.engine()
        for frame in frames:
            yield annotate_frame(engine, frame, task)

    def __getstate__(self) -> dict[str, Any]:
        # ONNX Runtime sessions and locks do not pickle; a copy builds its own engine on first use.
        state = self.__dict__.copy()
        state["_engine"] = None
        del state["_engine_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._engine_lock = threading.Lock()
