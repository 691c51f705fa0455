import json

import pytest

from qwen_dataset.db.corrections import apply_corrections
from qwen_dataset.quality.report import (
    MinimumSample,
    QualityTargets,
    build_qc_report,
    markdown_summary,
    render_plots,
    write_report_files,
)
from tests.factories import annotation, annotations_df, frame, frames_df, region

ONE = MinimumSample(1, 1, 1, 1)


def _batch():
    f0, f1 = frame(0, width=400, height=200), frame(1, width=400, height=200, low_light=True)
    ai = annotations_df(
        annotation(f0, [region([10, 10, 110, 40], "Login")]),
        annotation(f1, [region([0, 0, 50, 20], "Hi")], status="failed"),
    )
    human = annotations_df(
        annotation(
            f0,
            [region([10, 10, 110, 40], "Login"), region([200, 100, 300, 140], "用户名")],
            source="human",
            author="ann1",
            created_at="2026-01-01T00:00:00+00:00",
        ),
        annotation(
            f0,
            [region([10, 10, 110, 50], "Login"), region([200, 100, 300, 140], "用户")],
            source="human",
            author="ann2",
            created_at="2026-01-01T00:01:00+00:00",
        ),
    )
    final = apply_corrections(ai, human)
    return final, ai, human, frames_df(f0, f1)


def test_headline_figures_are_computed_from_double_annotations():
    final, ai, human, frames = _batch()
    report = build_qc_report("b1", final, ai, human, frames, min_sample=ONE)
    headline = report.headline()
    # Box 1: IoU = 100*30 / (100*40) = 0.75; box 2 identical: 1.0 -> mean 0.875.
    assert headline["mean_iou"] == pytest.approx(0.875)
    # "用户名" vs "用户": 1 error over 8 reference characters ("Login" + "用户名").
    assert headline["ocr_accuracy"] == pytest.approx(1 - 1 / 8)
    assert headline["action_completeness"] is None  # no GUI sequence in this batch
    assert report.verdicts() == {
        "mean_iou": True,
        "ocr_accuracy": False,
        "action_completeness": None,
        "semantic_consistency": None,
    }
    assert report.counts["ai_failure_rate"] == pytest.approx(0.5)
    assert report.counts["low_light_share"] == pytest.approx(0.5)
    assert set(report.per_annotator["annotator"]) == {"ann1", "ann2"}


def test_no_double_annotations_means_no_data_not_zero():
    final, ai, _, frames = _batch()
    report = build_qc_report("b1", apply_corrections(ai, ai.iloc[0:0]), ai, ai.iloc[0:0], frames)
    assert report.headline()["mean_iou"] is None
    assert "no data" in markdown_summary(report)


def test_report_renders_to_markdown_json_html_and_png(tmp_path):
    final, ai, human, frames = _batch()
    report = build_qc_report("b1", final, ai, human, frames, targets=QualityTargets(mean_iou=0.9), min_sample=ONE)
    plots = render_plots(report)
    assert {"iou_histogram", "per_annotator_agreement", "cer_by_language"} <= set(plots)
    assert all(png.startswith(b"\x89PNG") for png in plots.values())
    summary = markdown_summary(report, plots)
    assert "| mean_iou | 0.875 |" in summary and "| > 0.9 | FAIL |" in summary
    assert "data:image/png;base64," in summary
    paths = write_report_files(report, tmp_path, plots)
    document = json.loads(paths["json"].read_text())
    assert document["headline"]["mean_iou"] == pytest.approx(0.875)
    page = paths["html"].read_text()
    assert page.startswith("<!doctype html>") and "FAIL" in page
    assert 'src="http' not in page and "<script" not in page  # self-contained: nothing loaded from elsewhere
    assert 'href="b1.json" download' in page  # every figure as a download beside the page


def test_semantic_and_code_fidelity_scorers_run_on_the_items_they_apply_to(tmp_path):
    """The qc_report asset's scorers: MiniLM on double-annotated instructions, Chromium on HTML."""
    from PIL import Image

    from assets.quality import code_fidelity_scorer, semantic_scorer
    from qwen_dataset.store.layout import StorageLayout

    layout = StorageLayout(tmp_path)
    picture = tmp_path / "shot.png"
    Image.new("RGB", (320, 200), "white").save(picture)
    _, uri = layout.blobs.put_file(picture)
    f0 = frame(0, width=320, height=200, blob_uri=uri)
    gui = {
        "elements": [{"bbox": [10, 10, 110, 40], "role": "button", "text": "Login"}],
        "actions": [{"type": "click", "target": 0, "point": [50, 20]}],
    }

    def gui_row(author, instruction):
        row = annotation(f0, [], source="human", author=author, task="gui_action")
        return row.__class__(**{**row.__dict__, "payload": json.dumps({**gui, "instruction": instruction})})

    human = annotations_df(gui_row("ann1", "click the login button"), gui_row("ann2", "click the login button"))
    code = annotation(f0, [], source="human", author="ann1", task="image_to_code")
    html = "<html><body style='margin:0;background:#fff'></body></html>"
    final = annotations_df(code.__class__(**{**code.__dict__, "payload": json.dumps({"html": html, "layout": {}})}))

    report = build_qc_report(
        "b1",
        final,
        final.iloc[0:0],
        human,
        frames_df(f0),
        semantic=semantic_scorer(0.75),
        code_fidelity=code_fidelity_scorer(layout),
    )
    assert report.headline()["semantic_consistency"] == pytest.approx(1.0, abs=1e-4)
    assert len(report.code_fidelity) == 1
    assert report.code_fidelity[0].ssim == pytest.approx(1.0, abs=1e-3)  # a blank page draws the blank screen
    assert report.figures()["code_ssim"] == pytest.approx(1.0, abs=1e-3)


def test_total_disagreement_is_zero_not_no_data():
    f0 = frame(0, width=400, height=200)
    human = annotations_df(
        annotation(f0, [region([0, 0, 50, 50], "A")], source="human", author="ann1"),
        annotation(f0, [region([300, 100, 350, 150], "B")], source="human", author="ann2"),
    )
    report = build_qc_report("b1", human.iloc[0:1], human.iloc[0:0], human, frames_df(f0), min_sample=ONE)
    assert report.headline()["mean_iou"] == 0.0
    assert report.verdicts()["mean_iou"] is False
    assert report.headline()["ocr_accuracy"] == 0.0  # every reference character unmatched


def test_video_events_of_two_annotators_are_matched_in_time_for_the_report():
    import dataclasses

    from qwen_dataset.quality.descriptions import description_pairs
    from qwen_dataset.records import dump_payload

    video = frame(0, width=320, height=180, kind="video_frame", t=0.0, duration=4.0)

    def events(author: str, created_at: str, *spans) -> object:
        record = annotation(video, [], source="human", author=author, task="video_event", created_at=created_at)
        payload = {"events": [{"start": s, "end": e, "description": d} for s, e, d in spans]}
        return dataclasses.replace(record, payload=dump_payload(payload))

    human = annotations_df(
        events("ann1", "2026-01-01T00:00:00+00:00", (0.0, 2.0, "a red scene"), (2.0, 4.0, "a green scene")),
        # The other annotator listed the same events the other way round, one of them shorter.
        events("ann2", "2026-01-01T00:01:00+00:00", (2.0, 4.0, "the scene turns green"), (0.0, 1.0, "red scene")),
    )
    report = build_qc_report("b1", apply_corrections(human.iloc[0:0], human), human.iloc[0:0], human, frames_df(video))
    assert report.figures()["event_tiou"] == pytest.approx((0.5 + 1.0) / 2)
    assert (report.events.matched, report.events.unmatched_a, report.events.unmatched_b) == (2, 0, 0)
    assert report.to_dict()["events"]["videos"] == 1
    # The semantic consistency compares each event's description with its counterpart's, not by position.
    assert description_pairs(human) == [("red scene", "a red scene"), ("the scene turns green", "a green scene")]
