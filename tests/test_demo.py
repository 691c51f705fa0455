"""`make demo` tells the whole review story: a real disagreement fails the gate, arbitration resolves
it, a release with its card follows (simulated people, the workbench's and the pipeline's real code)."""

import importlib
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.mark.slow
def test_demo_story_gate_fails_for_a_real_reason_then_passes_and_releases(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("QWEN_DATABASE_URL", raising=False)
    monkeypatch.syspath_prepend(str(SCRIPTS))
    demo = importlib.import_module("demo")
    code, story = demo.run_demo(str(tmp_path / "store"), "sample-0", 0, DagsterInstance.ephemeral())
    assert code == 0

    # Before arbitration: the seeded disagreement fails the gate, with the frame and both annotators named.
    assert story.gate_before["severity"] == "ERROR" and not story.gate_before["exports_ran"]
    assert story.disagreement in story.gate_before["description"]
    assert "sim-alice vs sim-bob" in story.gate_before["description"]
    before = story.report_before
    # The sloppy annotator left out most lines of one screen: OCR accuracy fails; mean IoU, pooled over
    # every task with boxes (GUI elements, objects and layout blocks agree), drops but may stay above its target.
    assert before["statuses"]["ocr_accuracy"] == "fail"
    # After the reviewer arbitrated: resolved, the exports ran; the raw figures still show the disagreement.
    assert story.arbitrated and story.gate_after["exports_ran"]
    assert story.gate_after["passed"] or story.gate_after["severity"] == "WARN"
    after = story.report_after
    assert after["statuses"]["mean_iou"] == "pass" and after["statuses"]["ocr_accuracy"] == "pass"
    assert after["measurements"]["mean_iou"]["raw"] == pytest.approx(before["measurements"]["mean_iou"]["value"])
    assert before["measurements"]["mean_iou"]["value"] < after["measurements"]["mean_iou"]["value"]
    assert after["counts"]["annotators"] == 2 and after["counts"]["reviewers"] == 1  # the reviewer is no annotator
    assert story.reviewed  # one single item sent back and resubmitted
    # Every metric is in the report and measured (the default engine pre-annotates all five tasks).
    assert set(after["statuses"]) == {"mean_iou", "ocr_accuracy", "action_completeness", "semantic_consistency"}
    for name in ("mean_iou", "ocr_accuracy", "action_completeness", "semantic_consistency"):
        measured = after["measurements"][name]
        assert measured["value"] is not None and measured["ci_low"] is not None and measured["sample"] > 0
    assert after["figures"]["event_tiou"] is not None and after["figures"]["ai_ocr_accuracy"] is not None
    page = Path(story.report_html).read_text()
    for plot in ("iou_histogram", "per_annotator_agreement", "cer_by_language", "gated_figures"):
        assert plot in page
    # The release and its card, with the targets in force.
    assert story.release_version and Path(story.card).exists()
    card = Path(story.card).read_text()
    assert "Targets in force" in card and "passed their quality gates" in card
    release = (Path(story.release_path) / "release.json").read_text()
    assert '"targets"' in release and '"waivers": []' in release
    printed = capsys.readouterr().out
    assert "SIMULATED" in printed and "Next:" in printed and "import-batch sample-0" in printed
    sys.modules.pop("demo", None)
    sys.modules.pop("demo_story", None)
