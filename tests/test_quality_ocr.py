"""OCR accuracy (1 - CER): hand-computed pairs, normalisation, region matching, manifests."""

from __future__ import annotations

import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein

from qwen_dataset.quality.ocr_accuracy import (
    CerScore,
    character_error_rate,
    corpus_cer,
    edit_distances,
    ocr_accuracy,
    ocr_accuracy_ai_vs_final,
    ocr_accuracy_between_annotators,
    text_accuracy,
)
from qwen_dataset.text import normalize_text
from tests import factories


def test_cer_of_one_substitution():
    assert character_error_rate("hello", "hallo") == pytest.approx(1 / 5)
    assert character_error_rate("hello", "hello") == 0.0


def test_cjk_text_counts_characters_not_bytes():
    # 营业收入, a space and 12% = 8 characters; 入 -> 人 is one substitution.
    assert character_error_rate("营业收入 12%", "营业收人 12%") == pytest.approx(1 / 8)
    assert character_error_rate("你好世界", "你好") == pytest.approx(2 / 4)


def test_full_width_and_half_width_are_the_same_text():
    assert character_error_rate("ＡＢＣ　１２３", "ABC 123") == 0.0
    assert character_error_rate("提交（确认）", "提交(确认)") == 0.0
    assert character_error_rate("ﬁle", "file") == 0.0  # the ligature folds under NFKC


def test_a_lost_or_added_space_is_an_error_as_a_trainer_would_see_it():
    # The PP-OCRv4 reading of the sample login screen: two spaces lost in 17 characters.
    assert character_error_rate("欢迎回来 Welcome back", "欢迎回来Welcomeback") == pytest.approx(2 / 17)
    assert character_error_rate("发票号码", "发 票 号 码") == pytest.approx(3 / 4)
    assert character_error_rate("登录 - Acme Portal", "登录-Acme Portal") == pytest.approx(2 / 16)


def test_only_the_amount_and_kind_of_whitespace_is_folded():
    assert character_error_rate("Invoice  No.\n42", "Invoice No. 42") == 0.0
    assert character_error_rate(" OK ", "OK") == 0.0
    assert character_error_rate("用户名\u3000Username", "用户名 Username") == 0.0  # ideographic space


def test_the_whitespace_free_figure_forgives_spacing_only():
    assert character_error_rate("欢迎回来 Welcome back", "欢迎回来Welcomeback", spaces=False) == 0.0
    assert character_error_rate("Invoice  No.\n42", "InvoiceNo.42", spaces=False) == 0.0
    assert character_error_rate("Welcome back", "Welcorne back", spaces=False) == pytest.approx(2 / 11)
    assert corpus_cer(["a b"], ["ab"], spaces=False).errors == 0
    assert corpus_cer(["a b"], ["ab"]).errors == 1


def test_empty_reference_rules():
    assert character_error_rate("", "") == 0.0
    assert character_error_rate("  ", "") == 0.0
    assert character_error_rate("", "abc") == 1.0


def test_accuracy_is_floored_at_zero_when_insertions_pile_up():
    score = CerScore(pairs=1, characters=2, errors=5)
    assert score.cer == pytest.approx(2.5)
    assert score.accuracy == 0.0


def test_corpus_cer_weighs_long_lines_more():
    score = corpus_cer(["abcd", "你好"], ["abce", "你好"])
    assert (score.pairs, score.characters, score.errors) == (2, 6, 1)
    assert score.cer == pytest.approx(1 / 6)  # not the mean of 1/4 and 0


def test_vectorised_distances_equal_a_plain_loop():
    rng = np.random.default_rng(1)
    alphabet = list("abc你好界ＡＢ１ ")
    refs = ["".join(rng.choice(alphabet, int(rng.integers(0, 12)))) for _ in range(300)]
    hyps = ["".join(rng.choice(alphabet, int(rng.integers(0, 12)))) for _ in range(300)]
    expected = [Levenshtein.distance(normalize_text(r), normalize_text(h)) for r, h in zip(refs, hyps)]
    assert edit_distances(refs, hyps).tolist() == expected
    assert edit_distances(refs, hyps, workers=-1).tolist() == expected  # rapidfuzz cpdist
    assert edit_distances([], []).tolist() == []
    with pytest.raises(ValueError, match="pair by pair"):
        edit_distances(["a"], [])


def test_text_accuracy_per_language():
    report = text_accuracy(["hello", "你好世界", "Wi-Fi 设置"], ["hallo", "你好世界", "WiFi设置"])
    assert set(report.by_language) == {"en", "zh", "mixed"}
    assert (report.by_language["en"].characters, report.by_language["en"].errors) == (5, 1)
    assert report.by_language["zh"].accuracy == 1.0
    # "Wi-Fi 设置" is 8 characters with its space; the hyphen and the space are lost.
    assert (report.by_language["mixed"].characters, report.by_language["mixed"].errors) == (8, 2)
    assert report.overall.errors == 3
    assert report.accuracy == pytest.approx(1 - 3 / 17)
    bare = report.by_language_without_spaces["mixed"]
    assert (bare.characters, bare.errors) == (7, 1)
    assert report.accuracy_without_spaces == pytest.approx(1 - 2 / 16)
    with pytest.raises(ValueError, match="one language per pair"):
        text_accuracy(["a"], ["a"], languages=[])


def _region(bbox, text):
    return factories.region(bbox, text=text)


def test_regions_are_matched_by_box_then_compared():
    reference = [_region([0, 0, 100, 20], "Hello"), _region([0, 30, 100, 50], "世界你好")]
    hypothesis = [_region([2, 0, 100, 20], "Hel1o"), _region([0, 200, 100, 220], "ab")]
    report = ocr_accuracy([(reference, hypothesis)])
    # Hello/Hel1o: 1 error of 5; the unmatched 世界你好 is 4 deletions of 4 characters; the unmatched
    # "ab" adds 2 insertions and no reference character.
    assert (report.matched_regions, report.unmatched_reference, report.unmatched_hypothesis) == (1, 1, 1)
    assert (report.overall.characters, report.overall.errors) == (9, 7)
    assert report.accuracy == pytest.approx(2 / 9)
    assert (report.by_language["en"].characters, report.by_language["en"].errors) == (5, 3)
    assert (report.by_language["zh"].characters, report.by_language["zh"].errors) == (4, 4)
    assert not report.passes()


def test_region_order_does_not_matter_only_boxes_do():
    reference = [_region([0, 0, 100, 20], "第一行"), _region([0, 40, 100, 60], "second")]
    hypothesis = [_region([0, 40, 100, 60], "second"), _region([0, 0, 100, 20], "第一行")]
    report = ocr_accuracy([(reference, hypothesis)])
    assert (report.accuracy, report.matched_regions) == (1.0, 2)
    assert report.passes()


def test_empty_frames_are_perfect():
    report = ocr_accuracy([([], [])])
    assert (report.overall.pairs, report.cer, report.accuracy) == (0, 0.0, 1.0)


def _ocr(frame, author, regions, source="human", created_at="2026-01-01T00:00:00+00:00"):
    return factories.annotation(frame, regions, source=source, author=author, created_at=created_at)


def test_annotator_vs_annotator_from_a_manifest():
    f1 = factories.frame(0)
    df = factories.annotations_df(
        _ocr(f1, "alice", [_region([0, 0, 100, 20], "提交订单")]),
        _ocr(f1, "bob", [_region([0, 0, 100, 21], "提交定单")], created_at="2026-01-02T00:00:00+00:00"),
        _ocr(f1, "rapidocr", [_region([0, 0, 100, 20], "xxxx")], source="ai"),
    )
    report = ocr_accuracy_between_annotators(df)
    assert (report.overall.characters, report.overall.errors) == (4, 1)
    assert report.by_language["zh"].accuracy == pytest.approx(0.75)


def test_ai_vs_final_uses_the_reviewed_row_as_reference():
    f1, f2 = factories.frame(0), factories.frame(1)
    df = factories.annotations_df(
        _ocr(f1, "rapidocr", [_region([0, 0, 100, 20], "Totel 42")], source="ai"),
        _ocr(f1, "alice", [_region([0, 0, 100, 20], "Tota1 42")]),
        _ocr(f1, "lead", [_region([0, 0, 100, 20], "Total 42")], source="arbitrated"),
        _ocr(f2, "rapidocr", [_region([0, 0, 100, 20], "unreviewed")], source="ai"),
    )
    report = ocr_accuracy_ai_vs_final(df)
    # Only frame 1 was reviewed; the arbitrated "Total 42" (8 characters) is the truth.
    assert (report.overall.pairs, report.overall.characters, report.overall.errors) == (1, 8, 1)
    metadata = report.to_metadata()
    assert metadata["accuracy"] == pytest.approx(7 / 8)
    assert metadata["accuracy_en"] == pytest.approx(7 / 8)
    assert metadata["accuracy_without_spaces"] == pytest.approx(6 / 7)
    assert metadata["accuracy_en_without_spaces"] == pytest.approx(6 / 7)


def test_ai_text_with_glued_words_is_not_perfect_in_the_headline():
    f1 = factories.frame(0)
    df = factories.annotations_df(
        _ocr(f1, "rapidocr", [_region([0, 0, 300, 30], "欢迎回来Welcomeback")], source="ai"),
        _ocr(f1, "alice", [_region([0, 0, 300, 30], "欢迎回来 Welcome back")]),
    )
    report = ocr_accuracy_ai_vs_final(df)
    assert report.accuracy == pytest.approx(1 - 2 / 17)
    assert report.accuracy_without_spaces == 1.0
    assert report.to_metadata()["accuracy_mixed"] < 1.0
