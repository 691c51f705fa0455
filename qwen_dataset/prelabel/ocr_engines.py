"""The OCR engines the RapidOCR backend can run, each with its models inside its own wheel.

=========================  ========================================  ============================
engine                     package (pinned in pyproject.toml)        models (ONNX, in the wheel)
=========================  ========================================  ============================
``rapidocr``               ``rapidocr`` 3.10 (RapidOCR 3)            PP-OCRv6 small det + rec
                                                                     (multilingual: Simplified
                                                                     and Traditional Chinese,
                                                                     Japanese, English, Latin
                                                                     scripts), PP-OCR mobile v2.0
                                                                     direction classifier
``rapidocr-onnxruntime``   ``rapidocr-onnxruntime`` 1.4.4            PP-OCRv4 det + rec (Chinese
                                                                     and English), the same
                                                                     classifier
=========================  ========================================  ============================

Both are given the model files of their own installed wheel by path, so neither ever takes its
download branch (RapidOCR 3 downloads a model it cannot find; here it always finds it), and a test
runs each with the network refused. How they compare on the sample truth and on real documents:
the README's engine table (``benchmarks/eval_ocr_engines.py``).

An engine is a callable from a contiguous 8-bit BGR image to ``[(quad, text, score), ...]``;
:func:`build_engine` makes one, :func:`engine_models` names its models without importing the
package (which loads OpenCV and ONNX Runtime), so a backend's ``version`` stays cheap.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

OcrLine = tuple[Sequence[Sequence[float]], str, float]
Engine = Callable[[np.ndarray], list[OcrLine]]


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """One selectable engine: its distribution, import name and the model files it is given."""

    name: str
    package: str
    module: str


RAPIDOCR = EngineSpec("rapidocr", "rapidocr", "rapidocr")  # RapidOCR 3, PP-OCRv6 small
RAPIDOCR_ONNXRUNTIME = EngineSpec("rapidocr-onnxruntime", "rapidocr-onnxruntime", "rapidocr_onnxruntime")  # PP-OCRv4
ENGINES: dict[str, EngineSpec] = {spec.name: spec for spec in (RAPIDOCR, RAPIDOCR_ONNXRUNTIME)}

# RapidOCR 3's models of choice, as its wheel ships them (rapidocr/models/).
RAPIDOCR3_MODEL_FILES = {
    "det": "PP-OCRv6_det_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
}


def engine_spec(name: str) -> EngineSpec:
    """The engine called ``name``; a clear error listing the choices otherwise."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown OCR engine {name!r}; choose one of {sorted(ENGINES)}") from None


def installed_version(spec: EngineSpec) -> str:
    """Version of the engine's installed distribution."""
    try:
        return importlib.metadata.version(spec.package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(
            f"{spec.package} is not installed; install the project's pinned dependencies "
            f"(pip install -e .) to use the {spec.name} OCR engine"
        ) from exc


def _package_dir(spec: EngineSpec) -> Path:
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise RuntimeError(f"{spec.package} is not installed; install the project's pinned dependencies")
    return Path(next(iter(found.submodule_search_locations)))


@lru_cache(maxsize=4)
def model_files(name: str) -> dict[str, Path]:
    """The det/cls/rec ONNX files inside the installed wheel; an error if one is missing."""
    spec = engine_spec(name)
    package = _package_dir(spec)
    if spec is RAPIDOCR:
        files = {stage: package / "models" / file for stage, file in RAPIDOCR3_MODEL_FILES.items()}
    else:
        config = yaml.safe_load((package / "config.yaml").read_text(encoding="utf-8"))
        files = {stage.lower(): package / config[stage]["model_path"] for stage in ("Det", "Cls", "Rec")}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise RuntimeError(
            f"{spec.package} lacks its bundled model file(s) {missing}; reinstall it at the pinned version "
            f"(pip install --force-reinstall {spec.package}=={installed_version(spec)})"
        )
    return files


def engine_models(name: str) -> dict[str, str]:
    """Model names (file stems) of the engine's det/cls/rec stages."""
    return {stage: path.stem for stage, path in model_files(name).items()}


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """What an engine is built with; every field but ``threads`` changes what it recognises."""

    name: str = RAPIDOCR.name
    text_score: float = 0.5
    use_angle_cls: bool = True
    threads: int = 1  # ONNX Runtime intra-op threads of each model


def build_engine(settings: EngineSettings) -> Engine:
    """A ready engine (three ONNX Runtime sessions; seconds to build, so build once and reuse)."""
    spec = engine_spec(settings.name)
    if spec is RAPIDOCR:
        return _build_rapidocr3(settings)
    return _build_rapidocr_onnxruntime(settings)


def _build_rapidocr_onnxruntime(settings: EngineSettings) -> Engine:
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(
        text_score=settings.text_score,
        use_cls=settings.use_angle_cls,
        intra_op_num_threads=settings.threads,
        inter_op_num_threads=1,  # the three models run one after another
        print_verbose=False,
    )

    def run(image: np.ndarray) -> list[OcrLine]:
        result, _elapsed = engine(image)
        return [(points, str(text), float(score)) for points, text, score in result or ()]

    return run


def rapidocr3_params(settings: EngineSettings) -> dict[str, Any]:
    """RapidOCR 3's parameters: the wheel's own model files by path, our thresholds and threads."""
    files = model_files(RAPIDOCR.name)
    return {
        "Global.text_score": settings.text_score,
        "Global.use_cls": settings.use_angle_cls,
        "Global.log_level": "critical",  # it logs every model load at INFO otherwise
        "Det.model_path": str(files["det"]),
        "Cls.model_path": str(files["cls"]),
        "Rec.model_path": str(files["rec"]),
        "EngineConfig.onnxruntime.intra_op_num_threads": settings.threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    }


def _build_rapidocr3(settings: EngineSettings) -> Engine:
    from rapidocr import RapidOCR
    from rapidocr.utils.output import RapidOCROutput

    engine = RapidOCR(params=rapidocr3_params(settings))

    def run(image: np.ndarray) -> list[OcrLine]:
        output = engine(image)
        # The whole pipeline (detection, classification, recognition) answers with RapidOCROutput;
        # the other output types belong to single stages, which we never run alone.
        assert isinstance(output, RapidOCROutput), type(output)
        if output.boxes is None or output.txts is None or output.scores is None:
            return []
        return [
            (np.asarray(box).tolist(), str(text), float(score))
            for box, text, score in zip(output.boxes, output.txts, output.scores)
        ]

    return run
