import pytest

from qwen_dataset.quality.ocr_truth import OcrScore, normalize_text, score_regions


def test_exact_and_missing_lines():
    truth = [{"bbox": [0, 0, 100, 20], "text": "Login"}, {"bbox": [0, 50, 100, 70], "text": "用户名"}]
    perfect = score_regions(
        truth, [{"bbox": [1, 1, 99, 19], "text": "Login"}, {"bbox": [0, 50, 90, 70], "text": "用户名"}]
    )
    assert perfect == OcrScore(characters=8, errors=0, lines=2, missed_lines=0)
    assert perfect.accuracy == 1.0
    missing = score_regions(truth, [{"bbox": [1, 1, 99, 19], "text": "Logn"}])
    assert missing.errors == 1 + 3 and missing.missed_lines == 1
    assert missing.accuracy == pytest.approx(1 - 4 / 8)


def test_merged_prediction_is_aligned_not_penalised():
    truth = [{"bbox": [0, 0, 50, 20], "text": "Search"}, {"bbox": [60, 0, 120, 20], "text": "Go"}]
    merged = [{"bbox": [0, 0, 120, 20], "text": "Search Go"}]
    assert score_regions(truth, merged).errors == 0


def test_normalisation():
    assert normalize_text("ＡＢＣ １２ ") == "ABC12"
    assert (OcrScore(4, 1, 1, 0) + OcrScore(6, 0, 2, 0)).accuracy == pytest.approx(0.9)
