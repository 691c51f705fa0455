"""The spec's quality targets, apart from the metrics (a resource reads them without loading scipy)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class QualityTargets:
    """The spec's targets; each headline figure must be strictly above its target."""

    mean_iou: float = 0.85
    ocr_accuracy: float = 0.95
    action_completeness: float = 0.90
    semantic_consistency: float = 0.75
