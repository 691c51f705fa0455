import pandas as pd

from qwen_dataset.quality.validation import validate_quality

TARGETS = {"mean_iou": 0.85, "ocr_accuracy": 0.95}


def test_quality_gate_passes_above_targets_and_with_no_data():
    assert validate_quality(pd.DataFrame([{"batch": "b", "mean_iou": 0.9, "ocr_accuracy": None}]), TARGETS).success


def test_quality_gate_fails_at_or_below_target_and_names_the_figure():
    result = validate_quality(pd.DataFrame([{"batch": "b", "mean_iou": 0.85, "ocr_accuracy": 0.99}]), TARGETS)
    assert not result.success
    assert [f.column for f in result.failures] == ["mean_iou"]
    assert result.failures[0].unexpected_sample == [0.85]
