import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from qwen_dataset.quality.validation import validate_annotations, validate_frames
from tests.factories import annotation, annotations_df, frame, frames_df, region

REPO = Path(__file__).resolve().parents[1]


def test_frames_suite_passes_on_good_frames_and_flags_bad_ones():
    good = frames_df(
        frame(0),
        frame(1, kind="video_frame", t=0.0, upload="v" * 64),
        frame(2, kind="video_frame", t=1.0, upload="v" * 64),
    )
    assert validate_frames(good).success
    bad = frames_df(
        frame(0),
        frame(0),
        frame(1, kind="video_frame", t=2.0, upload="v" * 64),
        frame(2, kind="video_frame", t=1.0, upload="v" * 64),
        frame(3, width=0),
    )
    result = validate_frames(bad)
    assert not result.success
    failed = {(f.expectation, f.column) for f in result.failures}
    assert ("expect_column_values_to_be_unique", "frame_id") in failed
    assert ("expect_column_values_to_be_between", "t_step") in failed
    assert ("expect_column_values_to_be_between", "width") in failed


def test_annotation_suite_catches_boxes_outside_frame_and_bad_confidence():
    f0 = frame(0, width=100, height=50)
    good = annotations_df(annotation(f0, [region([0, 0, 100, 50]), region([10, 10, 20, 20], confidence=1.0)]))
    assert validate_annotations(good, frames_df(f0)).success
    bad = annotations_df(
        annotation(f0, [region([0, 0, 101, 50]), region([30, 10, 20, 20]), region([1, 1, 2, 2], confidence=1.5)])
    )
    result = validate_annotations(bad, frames_df(f0))
    failed = {f.column for f in result.failures}
    assert {"width/x2", "x2/x1", "confidence"} <= failed
    assert "unexpected" in result.describe_failures()


def test_empty_manifests_pass():
    assert validate_frames(frames_df()).success
    assert validate_annotations(annotations_df(), frames_df()).success


def test_frames_suite_flags_a_timestamp_past_the_video_end():
    video = "v" * 64
    good = frames_df(
        frame(0, kind="video_frame", t=0.0, upload=video, duration=2.0),
        frame(1, kind="video_frame", t=1.0, upload=video, duration=2.0),
        frame(2),
    )
    assert validate_frames(good).success
    bad = frames_df(
        frame(0, kind="video_frame", t=0.0, upload=video, duration=2.0),
        frame(1, kind="video_frame", t=3.0, upload=video, duration=2.0),
    )
    assert {f.column for f in validate_frames(bad).failures} == {"duration/t"}


def test_uploads_suite():
    from qwen_dataset.quality.validation import validate_uploads
    from qwen_dataset.records import UploadRecord, to_frame

    def upload(name, status, reason="", upload_id="a" * 64):
        return UploadRecord(upload_id, "b", name, "image", 10, status, reason, "blobs/x")

    good = to_frame([upload("a.png", "ok"), upload("b.png", "duplicate", "duplicate: same as a.png")], UploadRecord)
    assert validate_uploads(good).success
    bad = to_frame([upload("a.png", "ok"), upload("b.png", "ok"), upload("c.png", "quarantined")], UploadRecord)
    assert {f.column for f in validate_uploads(bad).failures} == {"ok_upload_id", "unexplained"}


def test_corrections_suite_checks_every_box_task_and_video_events():
    import json

    from qwen_dataset.quality.validation import validate_corrections

    f0 = frame(0, width=100, height=50)
    v0 = frame(1, kind="video_frame", t=0.0, upload="v" * 64, duration=4.0)
    gui = annotation(f0, [], task="gui_action")
    gui = gui.__class__(
        **{
            **gui.__dict__,
            "payload": json.dumps(
                {"elements": [{"bbox": [0, 0, 120, 10], "role": "button", "text": "OK"}], "actions": []}
            ),
        }
    )
    event = annotation(v0, [], task="video_event")
    event = event.__class__(**{**event.__dict__, "payload": json.dumps({"events": [{"start": 1.0, "end": 5.0}]})})
    result = validate_corrections(
        annotations_df(annotation(f0, [region([0, 0, 10, 10])]), gui, event), frames_df(f0, v0)
    )
    assert {f.column for f in result.failures} == {"width/x2", "duration/end"}
    duplicate = annotations_df(annotation(f0, [region([0, 0, 10, 10])]), annotation(f0, [], author="other"))
    assert "expect_compound_columns_to_be_unique" in {
        f.expectation for f in validate_corrections(duplicate, frames_df(f0)).failures
    }


def _empty_batch_suites():
    """Every suite a gate runs on an empty batch, with the tables it gets there."""
    from qwen_dataset.quality.validation import validate_corrections, validate_quality, validate_uploads
    from qwen_dataset.records import UploadRecord, to_frame

    headline = pd.DataFrame([{"batch": "b", "mean_iou": None, "ocr_accuracy": None}])
    return {
        "uploads": lambda: validate_uploads(to_frame([], UploadRecord)),
        "frames": lambda: validate_frames(frames_df()),
        "annotations": lambda: validate_annotations(annotations_df(), frames_df()),
        "corrections": lambda: validate_corrections(annotations_df(), frames_df()),
        "quality, nothing measured": lambda: validate_quality(headline, {"mean_iou": 0.85, "ocr_accuracy": 0.95}),
    }


@pytest.mark.parametrize("suite", sorted(_empty_batch_suites()))
def test_a_suite_no_row_can_fail_answers_what_gx_answers(suite, monkeypatch):
    from qwen_dataset.quality import validation

    without_gx = _empty_batch_suites()[suite]()
    monkeypatch.setattr(validation, "no_row_can_fail", lambda frame, expectation: False)
    with_gx = _empty_batch_suites()[suite]()
    assert without_gx.success and with_gx.success
    assert without_gx == with_gx


def test_a_missing_column_is_left_to_gx_even_without_rows():
    from qwen_dataset.quality.validation import EXPECT, run_suite

    result = run_suite("missing", pd.DataFrame({"a": []}), [EXPECT.ExpectColumnValuesToNotBeNull(column="b")])
    assert not result.success


def test_a_figure_below_its_target_still_fails_beside_a_null_one():
    from qwen_dataset.quality.validation import validate_quality

    headline = pd.DataFrame([{"batch": "b", "mean_iou": None, "ocr_accuracy": 0.5}])
    result = validate_quality(headline, {"mean_iou": 0.85, "ocr_accuracy": 0.95})
    assert [f.column for f in result.failures] == ["ocr_accuracy"]


def test_an_empty_batch_is_validated_without_importing_great_expectations():
    """A run worker of an empty batch must not pay the seconds of importing GX."""
    code = (
        "import sys\n"
        "from tests.test_validation import _empty_batch_suites\n"
        "assert all(check().success for check in _empty_batch_suites().values())\n"
        "assert 'great_expectations' not in sys.modules, 'GX was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
