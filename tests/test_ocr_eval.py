"""The ground-truth scorer: spaces counted as exported, the whitespace-free figure beside it."""

import pytest

from qwen_dataset.quality.ocr_truth import OcrScore, normalize_text, score_frame, score_regions, summarize


def test_exact_and_missing_lines():
    truth = [{"bbox": [0, 0, 100, 20], "text": "Login"}, {"bbox": [0, 50, 100, 70], "text": "用户名"}]
    perfect = score_regions(
        truth, [{"bbox": [1, 1, 99, 19], "text": "Login"}, {"bbox": [0, 50, 90, 70], "text": "用户名"}]
    )
    assert perfect == OcrScore(characters=8, errors=0, lines=2, missed_lines=0, characters_without_spaces=8, regions=2)
    assert perfect.accuracy == perfect.accuracy_without_spaces == perfect.line_recall == 1.0
    missing = score_regions(truth, [{"bbox": [1, 1, 99, 19], "text": "Logn"}])
    assert missing.errors == 1 + 3 and missing.missed_lines == 1
    assert missing.accuracy == pytest.approx(1 - 4 / 8)
    assert missing.line_recall == 0.5


def test_merged_prediction_is_aligned_not_penalised():
    truth = [{"bbox": [0, 0, 50, 20], "text": "Search"}, {"bbox": [60, 0, 120, 20], "text": "Go"}]
    merged = [{"bbox": [0, 0, 120, 20], "text": "Search Go"}]
    assert score_regions(truth, merged).errors == 0


def test_a_line_split_into_two_regions_reads_with_a_space_between_them():
    truth = [{"bbox": [0, 0, 200, 20], "text": "用户名 Username"}]
    split = [
        {"bbox": [0, 0, 60, 20], "text": "用户名", "reading_order": 0},
        {"bbox": [70, 0, 200, 20], "text": "Username", "reading_order": 1},
    ]
    assert score_regions(truth, split).errors == 0


def test_glued_words_cost_in_the_headline_only():
    truth = [{"bbox": [0, 0, 300, 30], "text": "欢迎回来 Welcome back"}]
    score = score_regions(truth, [{"bbox": [0, 0, 300, 30], "text": "欢迎回来Welcomeback"}])
    assert (score.characters, score.errors) == (17, 2)
    assert (score.characters_without_spaces, score.errors_without_spaces) == (15, 0)
    assert score.accuracy == pytest.approx(15 / 17)
    assert score.accuracy_without_spaces == 1.0


def test_regions_over_no_truth_line_are_spurious():
    truth = [{"bbox": [0, 0, 200, 20], "text": "登录 - Acme Portal"}]
    regions = [
        {"bbox": [0, 0, 200, 20], "text": "登录 - Acme Portal"},
        {"bbox": [1170, 5, 1190, 25], "text": "●"},
    ]
    frame = score_frame(truth, regions)
    assert (frame.regions, frame.spurious_regions) == (2, 1)
    assert summarize(frame.lines, frame.regions, frame.spurious_regions).spurious_regions == 1


def test_lines_carry_their_language():
    truth = [{"bbox": [0, 0, 100, 20], "text": "Login"}, {"bbox": [0, 50, 100, 70], "text": "用户名 Username"}]
    frame = score_frame(truth, [])
    assert [line.language for line in frame.lines] == ["en", "mixed"]
    assert summarize(line for line in frame.lines if line.language == "mixed").characters == 12


def test_normalisation():
    assert normalize_text("ＡＢＣ １２ ") == "ABC 12"
    assert (OcrScore(4, 1, 1, 0) + OcrScore(6, 0, 2, 0)).accuracy == pytest.approx(0.9)
