"""Prelabel backend resources: which engine pre-annotates frames.

Every resource here implements :class:`PrelabelResource`'s two methods, so the ``ai_annotations`` asset is engine-agnostic
and switching engines is a configuration change (``QWEN_PRELABEL_BACKEND``).
"""

from __future__ import annotations

import abc
from functools import lru_cache
from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from qwen_dataset.prelabel.base import PrelabelBackend
from qwen_dataset.prelabel.ocr_pool import plan_processes


class PrelabelResource(ConfigurableResource, abc.ABC):
    """Base of the prelabel resources (pydantic's model metaclass is an ``ABCMeta``)."""

    @abc.abstractmethod
    def backend(self) -> PrelabelBackend:
        """The domain backend the ``ai_annotations`` asset drives."""

    @abc.abstractmethod
    def backend_version(self) -> str:
        """Identifies everything that changes the output; part of ai_annotations' code version."""


@lru_cache(maxsize=4)
def _rapidocr_backend(
    engine: str, text_score: float, use_angle_cls: bool, workers: int, threads: int
) -> PrelabelBackend:
    # Building the ONNX sessions takes seconds: share one engine per setting and process.
    from qwen_dataset.prelabel.classical.backend import ClassicalBackend
    from qwen_dataset.prelabel.rapidocr_backend import RapidOcrBackend

    ocr = RapidOcrBackend(
        engine=engine, text_score=text_score, use_angle_cls=use_angle_cls, intra_op_threads=threads, workers=workers
    )
    return ClassicalBackend(ocr)


#: The OCR engines a RapidOcrResource can run (qwen_dataset.prelabel.ocr_engines.ENGINES).
OcrEngineName = Literal["rapidocr", "rapidocr-onnxruntime"]


class RapidOcrResource(PrelabelResource):
    """RapidOCR on the CPU (ONNX models shipped in the wheels): the default, no GPU needed.

    It annotates all five tasks: ``ocr`` with RapidOCR, the others with the classical engines on top
    of its lines (:mod:`qwen_dataset.prelabel.classical`; README, "The default engine per task").

    ``engine`` picks the recogniser (README, "OCR engines"); ``workers`` and ``threads`` how the
    frames of a batch share the machine: ``workers`` processes of ``threads`` ONNX Runtime threads,
    never more than the cores together (0 = choose: see
    :func:`qwen_dataset.prelabel.ocr_pool.plan_processes`).
    """

    engine: OcrEngineName = Field(
        default="rapidocr",
        description="rapidocr: RapidOCR 3, PP-OCRv6 small (default); rapidocr-onnxruntime: RapidOCR 1.4, PP-OCRv4.",
    )
    text_score: float = Field(default=0.5, description="Drop recognised lines scored below this.")
    workers: int = Field(default=0, description="OCR worker processes per run (0: one per `threads` cores).")
    threads: int = Field(default=1, description="ONNX Runtime intra-op threads per worker process (0: share out).")
    use_angle_cls: bool = Field(default=True, description="Classify and fix 180-degree rotated text lines.")

    def backend(self) -> PrelabelBackend:
        plan = plan_processes(self.workers, self.threads)
        return _rapidocr_backend(self.engine, self.text_score, self.use_angle_cls, plan.workers, plan.threads)

    def backend_version(self) -> str:
        return self.backend().version
