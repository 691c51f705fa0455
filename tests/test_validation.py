from qwen_dataset.validation import validate_annotations, validate_frames
from tests.factories import annotation, annotations_df, frame, frames_df, region


def test_frames_suite_passes_on_good_frames_and_flags_bad_ones():
    good = frames_df(frame(0), frame(1, kind="video_frame", t=0.0, upload="v" * 64),
                     frame(2, kind="video_frame", t=1.0, upload="v" * 64))
    assert validate_frames(good).success
    bad = frames_df(frame(0), frame(0), frame(1, kind="video_frame", t=2.0, upload="v" * 64),
                    frame(2, kind="video_frame", t=1.0, upload="v" * 64), frame(3, width=0))
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
    bad = annotations_df(annotation(f0, [region([0, 0, 101, 50]), region([30, 10, 20, 20]), region([1, 1, 2, 2], confidence=1.5)]))
    result = validate_annotations(bad, frames_df(f0))
    failed = {f.column for f in result.failures}
    assert {"width/x2", "x2/x1", "confidence"} <= failed
    assert "unexpected" in result.describe_failures()


def test_empty_manifests_pass():
    assert validate_frames(frames_df()).success
    assert validate_annotations(annotations_df(), frames_df()).success
