import json

from qwen_dataset.db.corrections import apply_corrections
from qwen_dataset.payloads import boxes_table
from qwen_dataset.records import FrameRecord, from_frame
from tests.factories import annotation, annotations_df, frame, frames_df, region


def test_manifest_round_trip_keeps_none():
    records = [frame(0), frame(1, t=1.5, kind="video_frame")]
    back = from_frame(frames_df(*records), FrameRecord)
    assert back == records
    assert back[0].t is None and back[1].t == 1.5


def test_boxes_table_joins_frame_size_and_skips_failures():
    f0, f1 = frame(0, width=300, height=150), frame(1)
    table = boxes_table(
        annotations_df(
            annotation(f0, [region([1, 2, 3, 4]), region([5, 6, 7, 8], order=1)]),
            annotation(f1, [region([1, 1, 2, 2])], status="failed"),
        ),
        frames_df(f0, f1),
    )
    assert len(table) == 2
    assert table["width"].tolist() == [300, 300]
    assert table[["x1", "y1", "x2", "y2"]].iloc[1].tolist() == [5, 6, 7, 8]


def test_corrections_prefer_arbitrated_then_latest_human_then_ai():
    f0, f1, f2 = frame(0), frame(1), frame(2)
    ai = annotations_df(
        annotation(f0, [region([0, 0, 1, 1], "ai")]),
        annotation(f1, [region([0, 0, 1, 1], "ai")]),
        annotation(f2, [region([0, 0, 1, 1], "ai")]),
    )
    human = annotations_df(
        annotation(
            f0, [region([0, 0, 1, 1], "old")], source="human", author="ann1", created_at="2026-01-01T00:00:00+00:00"
        ),
        annotation(
            f0, [region([0, 0, 1, 1], "new")], source="human", author="ann2", created_at="2026-01-02T00:00:00+00:00"
        ),
        annotation(f1, [region([0, 0, 1, 1], "human")], source="human", author="ann1"),
        annotation(f1, [region([0, 0, 1, 1], "arb")], source="arbitrated", author="rev1"),
    )
    merged = apply_corrections(ai, human).set_index("frame_id")
    text = {fid: json.loads(p)["regions"][0]["text"] for fid, p in merged["payload"].items()}
    assert text == {f0.frame_id: "new", f1.frame_id: "arb", f2.frame_id: "ai"}
    assert merged["reviewed"].to_dict() == {f0.frame_id: True, f1.frame_id: True, f2.frame_id: False}


def test_corrections_with_no_rows():
    assert len(apply_corrections(annotations_df(), annotations_df())) == 0
