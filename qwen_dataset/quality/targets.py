"""The spec's quality targets and minimum samples, apart from the metrics (a resource reads them without
loading scipy)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

#: The gated figures, in the order reports show them.
GATED = ("mean_iou", "ocr_accuracy", "action_completeness", "semantic_consistency")


def figure_number(value: Any) -> float | None:
    """A stored figure as a number (None: missing, NaN or not a number)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


@dataclasses.dataclass(frozen=True)
class QualityTargets:
    """The spec's targets; each headline figure must be strictly above its target."""

    mean_iou: float = 0.85
    ocr_accuracy: float = 0.95
    action_completeness: float = 0.90
    semantic_consistency: float = 0.75


@dataclasses.dataclass(frozen=True)
class MinimumSample:
    """Units a gated figure needs before it can pass or fail; below it: "insufficient sample"."""

    mean_iou: int = 5
    ocr_accuracy: int = 5
    action_completeness: int = 5
    semantic_consistency: int = 5


#: Where the review workbench runs by default: the report's and the gate's links point there.
DEFAULT_WORKBENCH_URL = "http://127.0.0.1:8080"
