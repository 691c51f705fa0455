"""Video events in the workbench: import with shot cuts and audio changes, the video served to
the timeline editor, autosave with optimistic locking, submit, double-blind agreement by temporal
IoU and descriptions, arbitration - on SQLite and on PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session

from qwen_dataset.db.models import HumanAnnotation, ItemStatus, WorkItem
from qwen_dataset.db.queries import final_annotations
from qwen_dataset.payloads import validate_payload
from tests.test_workbench_api import AI_EVENTS, VIDEO_SECONDS, World, item_of, my_items, open_annotation
from tests.test_workbench_api import world as world  # noqa: F401  (the fixture, on SQLite and PostgreSQL)

# The test video's scene changes: 3 scenes over 4 s at 25 fps, so the first frames of scenes 2
# and 3 are frames 33 and 67 (round(100 / 3), round(200 / 3)), shown at 1.32 s and 2.68 s.
CUTS = [33 / 25, 67 / 25]


def _video_entries(world: World, batch: str) -> list[tuple[str, dict]]:
    return [
        (name, entry)
        for name in ("ann1", "ann2", "ann3")
        for entry in my_items(world, name)
        if entry["batch"] == batch and entry["task"] == "video_event"
    ]


def _save(world: World, name: str, entry: dict, events: list[dict], version: int | None = None):
    client = world.client(name)
    if version is None:
        version = open_annotation(client, entry["annotation_id"])["version"]
    return client.put(f"/api/annotations/{entry['annotation_id']}", json={"version": version, "result": events})


def _submit(world: World, name: str, entry: dict, events: list[dict]):
    client = world.client(name)
    version = open_annotation(client, entry["annotation_id"])["version"]
    return client.post(f"/api/annotations/{entry['annotation_id']}/submit", json={"version": version, "result": events})


def test_a_video_becomes_one_item_with_its_cuts_and_plays_in_the_page(world: World):
    world.set_double_rate(0.0)
    imported = world.import_video_batch("b-video")
    frames = imported["frames"]
    # One OCR item per sampled frame (none pre-annotated here) and ONE video_event item per video.
    assert imported["summary"]["items_created"] == 1 and imported["summary"]["skipped_tasks"] == {}
    ((owner, entry),) = _video_entries(world, "b-video")
    opened = open_annotation(world.client(owner), entry["annotation_id"])
    assert entry["frame_id"] == frames[0].frame_id  # filed under the first sampled frame, as the pipeline files it
    # The editor starts from the AI's events, aligned to the cuts, and knows the anchors and the duration.
    assert [event["description"] for event in opened["result"]] == [event["description"] for event in AI_EVENTS]
    assert opened["result"][0]["end"] == pytest.approx(CUTS[0], abs=1e-3)  # 1.2 snapped to the cut
    timeline = opened["task"]["data"]["timeline"]
    assert timeline["cuts"] == pytest.approx(CUTS, abs=1e-3) and timeline["duration"] == pytest.approx(VIDEO_SECONDS)
    assert timeline["anchors"] == "video_scan" and len(timeline["frames"]) == len(frames)
    assert opened["task"]["predictions"][0]["result"] == opened["result"]  # the AI's version, for comparison
    # The page plays the video itself: the right type, and byte ranges for seeking.
    media = opened["task"]["data"]["video"]
    client = world.client(owner)
    whole = client.get(media)
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.content == imported["path"].read_bytes()
    part = client.get(media, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert world.client("ann3" if owner != "ann3" else "ann2").get(media).status_code == 404  # not theirs


def test_events_are_autosaved_with_optimistic_locking_and_submitted(world: World):
    world.set_double_rate(0.0)
    world.import_video_batch("b-video-save")
    ((owner, entry),) = _video_entries(world, "b-video-save")
    client = world.client(owner)
    start = open_annotation(client, entry["annotation_id"])
    events = [
        {"start": 0.0, "end": CUTS[0], "description": "a red scene"},
        {"start": CUTS[0], "end": CUTS[1], "description": "a green scene"},
        {"start": CUTS[1], "end": VIDEO_SECONDS, "description": "a blue scene"},
    ]
    saved = _save(world, owner, entry, events, start["version"])
    assert saved.status_code == 200 and saved.json()["version"] == start["version"] + 1
    # A second tab still holding the old version is refused, never silently merged.
    stale = _save(world, owner, entry, events[:1], start["version"])
    assert stale.status_code == 409 and stale.json()["current_version"] == saved.json()["version"]
    reopened = open_annotation(client, entry["annotation_id"])
    assert [event["description"] for event in reopened["result"]] == ["a red scene", "a green scene", "a blue scene"]
    stored = reopened["payload"]
    validate_payload("video_event", stored)
    assert stored["alignment"]["source"] == "video_scan" and stored["alignment"]["cuts"] == pytest.approx(
        CUTS, abs=1e-3
    )
    # Each event lists the sampled frames inside it (frames at 0, 1, 2, 3 s).
    assert [len(event["frame_ids"]) for event in stored["events"]] == [2, 1, 1]
    assert final_annotations(world.engine, "b-video-save").empty  # a draft is not final
    submitted = _submit(world, owner, entry, events)
    assert submitted.status_code == 200
    final = final_annotations(world.engine, "b-video-save")
    assert final["task"].tolist() == ["video_event"] and final["author"].tolist() == [owner]
    assert [event["end"] for event in json.loads(final["payload"].iloc[0])["events"]] == pytest.approx(
        [CUTS[0], CUTS[1], VIDEO_SECONDS]
    )


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([{"start": 2.0, "end": 1.0, "description": "x"}], "start before its end"),
        ([{"start": 1.0, "end": 9.0, "description": "x"}], "after the video's end"),
        ([{"start": -1.0, "end": 1.0, "description": "x"}], "start before"),
        ([{"start": 0.0, "description": "x"}], "needs a start and an end"),
        ([{"start": 0.0, "end": 1.0, "description": "x" * 20_000}], "10,000"),
        ([{"start": 0.0, "end": 0.1, "description": str(n)} for n in range(1001)], "at most 1000"),
        ("all of them", "valid list"),
    ],
)
def test_impossible_events_are_refused_with_a_reason(world: World, events, message):
    world.set_double_rate(0.0)
    world.import_video_batch("b-video-bad")
    ((owner, entry),) = _video_entries(world, "b-video-bad")
    refused = _save(world, owner, entry, events)
    assert refused.status_code == 422 and message in refused.json()["detail"], refused.text


def test_a_video_nobody_pre_annotated_starts_empty_with_cuts_from_a_scan(world: World):
    world.set_double_rate(0.0)
    world.import_video_batch("b-video-cpu", ai_events=None)
    ((owner, entry),) = _video_entries(world, "b-video-cpu")
    opened = open_annotation(world.client(owner), entry["annotation_id"])
    assert opened["result"] == [] and "no pre-annotation" in opened["ai_error"]
    assert opened["task"]["predictions"] == []
    assert opened["task"]["data"]["timeline"]["cuts"] == pytest.approx(CUTS, abs=1e-3)
    with Session(world.engine) as session:
        assert session.get(WorkItem, item_of(world, entry["annotation_id"]).item_id).ai_status == "none"
    assert _submit(world, owner, entry, [{"start": 0.5, "end": 1.0, "description": "red"}]).status_code == 200
    assert len(final_annotations(world.engine, "b-video-cpu")) == 1


def _double_video(world: World, batch: str) -> tuple[tuple[str, dict], tuple[str, dict]]:
    world.set_double_rate(1.0)
    world.import_video_batch(batch)
    pairs = _video_entries(world, batch)
    assert len(pairs) == 2 and pairs[0][0] != pairs[1][0]
    return pairs[0], pairs[1]


def _slot_of(world: World, annotation_id: str) -> int | None:
    with Session(world.engine) as session:
        row = session.get(HumanAnnotation, annotation_id)
        return row.slot if row is not None else None


def test_double_blind_videos_agree_by_temporal_iou_and_descriptions(world: World):
    (first, entry_a), (second, entry_b) = _double_video(world, "b-video-agree")
    a = [{"start": 0.0, "end": 1.33, "description": "A red scene"}, {"start": 1.4, "end": 2.6, "description": "green"}]
    b = [
        {"start": 1.35, "end": 2.67, "description": "green"},
        {"start": 0.05, "end": 1.33, "description": "a red scene."},
    ]
    assert _submit(world, first, entry_a, a).status_code == 200
    assert final_annotations(world.engine, "b-video-agree").empty  # waits for the other version
    assert _submit(world, second, entry_b, b).status_code == 200
    item = item_of(world, entry_a["annotation_id"])
    assert item.status == ItemStatus.FINAL, item.disagreement
    assert final_annotations(world.engine, "b-video-agree")["author"].tolist() == [first]


def test_disagreeing_videos_go_to_arbitration_and_a_merge_is_final(world: World):
    (first, entry_a), (second, entry_b) = _double_video(world, "b-video-arb")
    a = [{"start": 0.0, "end": 1.33, "description": "a red scene"}, {"start": 1.4, "end": 2.6, "description": "green"}]
    b = [{"start": 0.0, "end": 0.6, "description": "a red scene"}, {"start": 1.4, "end": 2.6, "description": "a dog"}]
    assert _submit(world, first, entry_a, a).status_code == 200
    assert _submit(world, second, entry_b, b).status_code == 200
    item = item_of(world, entry_a["annotation_id"])
    assert item.status == ItemStatus.ARBITRATION
    # The reasons' A is the version in slot 1 (the reviewer's A), whoever submitted first.
    a_first = _slot_of(world, entry_a["annotation_id"]) == 1
    texts = "'green' vs 'a dog'" if a_first else "'a dog' vs 'green'"
    assert "temporal IoU 0.45 is below 0.70" in item.disagreement and texts in item.disagreement
    # Each annotator still sees only their own version.
    mine = open_annotation(world.client(first), entry_a["annotation_id"])
    assert "a dog" not in json.dumps(mine)
    reviewer = world.client("rita")
    detail = reviewer.get(f"/api/review/items/{item.item_id}").json()
    assert sorted(version["author"] for version in detail["versions"]) == sorted([first, second])
    assert detail["task"]["data"]["timeline"]["cuts"] == pytest.approx(CUTS, abs=1e-3)
    assert {version["label"]: len(version["result"]) for version in detail["versions"]} == {"a": 2, "b": 2}
    merged = [
        {"start": 0.0, "end": CUTS[0], "description": "a red scene"},
        {"start": 1.4, "end": 2.6, "description": "green"},
    ]
    resolved = reviewer.post(f"/api/review/items/{item.item_id}/resolve", json={"result": merged})
    assert resolved.status_code == 200 and resolved.json()["source"] == "arbitrated"
    final = final_annotations(world.engine, "b-video-arb")
    assert final["source"].tolist() == ["arbitrated"]
    assert [event["end"] for event in json.loads(final["payload"].iloc[0])["events"]] == pytest.approx([CUTS[0], 2.6])
