"""Quality targets and optional scorers for the qc_report asset."""

from dagster import ConfigurableResource
from pydantic import Field

from qwen_dataset.quality.targets import QualityTargets

_DEFAULTS = QualityTargets()


class QualityResource(ConfigurableResource):
    """Targets of the quality gates (defaults from the spec); each figure must be above its target."""

    mean_iou: float = Field(default=_DEFAULTS.mean_iou, description="IoU consistency between annotators.")
    ocr_accuracy: float = Field(default=_DEFAULTS.ocr_accuracy, description="1 - CER between annotators.")
    action_completeness: float = Field(
        default=_DEFAULTS.action_completeness, description="Share of GUI action sequences that execute."
    )
    semantic_consistency: float = Field(
        default=_DEFAULTS.semantic_consistency, description="BERTScore-style F1 of descriptions between annotators."
    )

    def targets(self) -> QualityTargets:
        return QualityTargets(
            mean_iou=self.mean_iou,
            ocr_accuracy=self.ocr_accuracy,
            action_completeness=self.action_completeness,
            semantic_consistency=self.semantic_consistency,
        )
