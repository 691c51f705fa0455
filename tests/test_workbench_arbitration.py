"""What a reviewer arbitrating an item is given: both blind versions box by box, the AI's, and
reasons whose A and B are the versions the page labels A and B (SQLite and PostgreSQL)."""

from __future__ import annotations

from tests.test_workbench_api import AI_AUTHOR, AI_BOX, World, item_of, moved_result, open_annotation, rows_of
from tests.test_workbench_api import world as world  # noqa: F401  (the fixture, on SQLite and PostgreSQL)


def _versions_by_slot(world: World, batch: str):
    world.set_double_rate(1.0)
    world.import_batch(batch, frames=1)
    with_slot = [row for row in rows_of(world, _item_id(world, batch)) if row.slot]
    return sorted(with_slot, key=lambda row: row.slot)


def _item_id(world: World, batch: str) -> str:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from qwen_dataset.db.models import WorkItem

    with Session(world.engine) as session:
        (item_id,) = session.scalars(select(WorkItem.item_id).where(WorkItem.batch == batch)).all()
    return item_id


def _submit(world: World, row, box: list[float], text: str) -> None:
    client = world.client(row.author)
    annotation = open_annotation(client, row.annotation_id)
    response = client.post(
        f"/api/annotations/{row.annotation_id}/submit",
        json={"version": annotation["version"], "result": moved_result(annotation, box, text)},
    )
    assert response.status_code == 200, response.text


def test_the_reasons_call_slot_one_a_whoever_submitted_first(world):
    a, b = _versions_by_slot(world, "b-slots")
    _submit(world, b, [200, 100, 320, 150], "late")  # B submits first
    _submit(world, a, AI_BOX, "hello")
    item = item_of(world, a.annotation_id)
    assert item.disagreement == (
        "no counterpart in B for box 1 of A ('hello' at 40,40-160,80); "
        "no counterpart in A for box 1 of B ('late' at 200,100-320,150)"
    )
    view = world.client("rita").get(f"/api/review/items/{item.item_id}").json()
    assert [version["author"] for version in view["versions"]] == [a.author, b.author]


def test_the_review_item_compares_the_versions_box_by_box(world):
    a, b = _versions_by_slot(world, "b-compare")
    _submit(world, a, AI_BOX, "hello")
    _submit(world, b, [40, 50, 160, 90], "hallo")
    item = item_of(world, a.annotation_id)
    view = world.client("rita").get(f"/api/review/items/{item.item_id}").json()
    comparison = view["comparison"]
    assert (comparison["width"], comparison["height"], comparison["min_iou"]) == (400, 200, 0.85)
    (mark_a,) = comparison["a"]
    assert mark_a["status"] == "differs" and mark_a["partner"] == 1
    assert mark_a["issues"] == ["IoU 0.60 is below 0.85", "'hello' vs 'hallo'"]
    assert mark_a["where"] == "'hello' at 40,40-160,80"
    assert comparison["b"][0]["bbox"] == [40.0, 50.0, 160.0, 90.0]
    assert [(mark["number"], mark["status"]) for mark in comparison["ai"]] == [(1, "alone")]
    # The AI's prediction carries the name the editor shows on its tab.
    (prediction,) = view["task"]["predictions"]
    assert prediction["createdBy"] == f"AI: {AI_AUTHOR}"


def test_a_single_annotated_item_has_no_box_comparison(world):
    world.set_double_rate(0.0)
    world.import_batch("b-single-view", frames=1)
    item_id = _item_id(world, "b-single-view")
    assert world.client("rita").get(f"/api/review/items/{item_id}").json()["comparison"] is None


def test_two_videos_are_compared_event_by_event(world):
    from tests.test_workbench_video import _double_video
    from tests.test_workbench_video import _submit as submit_events

    (first, entry_a), (second, entry_b) = _double_video(world, "b-video-compare")
    a = [{"start": 0.0, "end": 1.33, "description": "a red scene"}, {"start": 1.4, "end": 2.6, "description": "green"}]
    b = [{"start": 0.0, "end": 1.33, "description": "a red scene"}]
    assert submit_events(world, first, entry_a, a).status_code == 200
    assert submit_events(world, second, entry_b, b).status_code == 200
    item = item_of(world, entry_a["annotation_id"])
    comparison = world.client("rita").get(f"/api/review/items/{item.item_id}").json()["comparison"]
    assert comparison["kind"] == "events"
    with_two, with_one = (
        (comparison["a"], comparison["b"]) if len(comparison["a"]) == 2 else (comparison["b"], comparison["a"])
    )
    assert [(m["number"], m["status"]) for m in with_two] == [(1, "agrees"), (2, "alone")]
    assert with_two[1]["where"] == "1.40-2.60 s, 'green'"
    assert [(m["number"], m["partner"], m["status"]) for m in with_one] == [(1, 1, "agrees")]
    assert len(comparison["ai"]) == 2 and all(m["status"] == "alone" for m in comparison["ai"])
