"""Prelabel backend resources: which engine pre-annotates frames.

Every resource here implements :class:`PrelabelResource`'s two methods, so the ``ai_annotations`` asset is engine-agnostic
and switching engines is a configuration change (``QWEN_PRELABEL_BACKEND``).
"""

from __future__ import annotations

import abc
from functools import lru_cache

from dagster import ConfigurableResource
from pydantic import Field

from qwen_dataset.prelabel.base import PrelabelBackend


class PrelabelResource(ConfigurableResource, abc.ABC):
    """Base of the prelabel resources (pydantic's model metaclass is an ``ABCMeta``)."""

    @abc.abstractmethod
    def backend(self) -> PrelabelBackend:
        """The domain backend the ``ai_annotations`` asset drives."""

    @abc.abstractmethod
    def backend_version(self) -> str:
        """Identifies everything that changes the output; part of ai_annotations' code version."""


@lru_cache(maxsize=4)
def _rapidocr_backend(text_score: float, threads: int, use_angle_cls: bool) -> PrelabelBackend:
    # Building the ONNX sessions takes seconds: share one engine per setting and process.
    from qwen_dataset.prelabel.rapidocr_backend import RapidOcrBackend

    return RapidOcrBackend(text_score=text_score, intra_op_threads=threads, use_angle_cls=use_angle_cls)


class RapidOcrResource(PrelabelResource):
    """RapidOCR on the CPU (ONNX models shipped in the wheel): the default, no GPU needed."""

    text_score: float = Field(default=0.5, description="Drop recognised lines scored below this.")
    threads: int = Field(default=2, description="ONNX Runtime intra-op threads.")
    use_angle_cls: bool = Field(default=True, description="Classify and fix 180-degree rotated text lines.")

    def backend(self) -> PrelabelBackend:
        return _rapidocr_backend(self.text_score, self.threads, self.use_angle_cls)

    def backend_version(self) -> str:
        return self.backend().version
