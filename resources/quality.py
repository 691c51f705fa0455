"""Quality targets and optional scorers for the qc_report asset."""

from dagster import ConfigurableResource
from pydantic import Field

from qwen_dataset.quality.targets import DEFAULT_WORKBENCH_URL, MinimumSample, QualityTargets

_DEFAULTS = QualityTargets()
_MINIMUM = MinimumSample()


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

    mean_iou_min_sample: int = Field(
        default=_MINIMUM.mean_iou, description="Double-blind frames (per task with boxes) before mean IoU is gated."
    )
    ocr_accuracy_min_sample: int = Field(
        default=_MINIMUM.ocr_accuracy, description="Double-blind OCR frames before OCR accuracy is gated."
    )
    action_completeness_min_sample: int = Field(
        default=_MINIMUM.action_completeness, description="GUI action sequences before completeness is gated."
    )
    semantic_consistency_min_sample: int = Field(
        default=_MINIMUM.semantic_consistency, description="Description pairs before semantic consistency is gated."
    )
    workbench_url: str = Field(
        default=DEFAULT_WORKBENCH_URL, description="Where the review workbench runs: the report's and the gate's links."
    )

    def min_sample(self) -> MinimumSample:
        """Below its minimum sample a figure is "insufficient sample": a warning, neither pass nor fail."""
        return MinimumSample(
            mean_iou=self.mean_iou_min_sample,
            ocr_accuracy=self.ocr_accuracy_min_sample,
            action_completeness=self.action_completeness_min_sample,
            semantic_consistency=self.semantic_consistency_min_sample,
        )

    def targets(self) -> QualityTargets:
        return QualityTargets(
            mean_iou=self.mean_iou,
            ocr_accuracy=self.ocr_accuracy,
            action_completeness=self.action_completeness,
            semantic_consistency=self.semantic_consistency,
        )
