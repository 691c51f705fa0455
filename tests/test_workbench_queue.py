"""The annotator's queue: file names, thumbnails, progress, and the next draft ("submit and next").

Runs on SQLite and PostgreSQL through the ``world`` fixture of the workbench API tests.
"""

from __future__ import annotations

import io

import pandas as pd
from PIL import Image

from qwen_dataset.records import UploadRecord, to_frame
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import read_parquet, write_parquet
from qwen_dataset.workbench.queue import Progress, QueueRow, next_draft
from tests.test_workbench_api import HEIGHT, WIDTH, World, _submit, my_items, write_batch
from tests.test_workbench_api import world as world  # noqa: F401  (the fixture, on SQLite and PostgreSQL)


def write_uploads(layout: StorageLayout, batch: str, names: dict[str, str]) -> None:
    """The batch's upload manifest, as raw_uploads writes it: ``upload_id`` -> file name."""
    rows = [
        UploadRecord(upload_id, batch, name, "image", 1, "ok", "", f"sha256:{upload_id}")
        for upload_id, name in names.items()
    ]
    write_parquet(layout.manifest("raw_uploads", batch), to_frame(rows, UploadRecord))


def import_named(world: World, batch: str, frames: int) -> list[str]:
    """A batch whose files are called scan-000.png, scan-001.png, ... (in frame order)."""
    frame_ids = write_batch(world.layout, batch, frames=frames)
    uploads = read_parquet(world.layout.manifest("frames", batch))["upload_id"]
    names = {str(upload): f"scan-{index:03d}.png" for index, upload in enumerate(uploads)}
    write_uploads(world.layout, batch, names)
    response = world.client("admin").post(f"/api/batches/{batch}/import")
    assert response.status_code == 200, response.text
    return frame_ids


def test_the_queue_shows_file_names_thumbnails_and_progress(world):
    world.set_double_rate(0.0)
    import_named(world, "b-queue", frames=6)
    owner = max(("ann1", "ann2", "ann3"), key=lambda name: len(my_items(world, name)))
    items = my_items(world, owner)
    assert len(items) >= 2
    assert all(item["name"].startswith("scan-") and item["name"].endswith(".png") for item in items)
    client = world.client(owner)
    # The thumbnail: a small JPEG of the frame, for the item's annotator only.
    item_id = _item_id(world, items[0]["annotation_id"])
    thumb = client.get(f"/media/items/{item_id}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    picture = Image.open(io.BytesIO(thumb.content))
    assert max(picture.size) == 160 and picture.size[0] / picture.size[1] == WIDTH / HEIGHT
    stranger = next(name for name in ("ann1", "ann2", "ann3") if name != owner)
    if not any(_item_id(world, e["annotation_id"]) == item_id for e in my_items(world, stranger)):
        assert world.client(stranger).get(f"/media/items/{item_id}/thumbnail").status_code == 404
    assert world.client("rita").get(f"/media/items/{item_id}/thumbnail").status_code == 200
    # Progress: none submitted, then one.
    progress = client.get("/api/tasks/progress").json()
    assert progress["mine"] == {"done": 0, "total": len(items)}
    assert progress["batches"] == [
        {"batch": "b-queue", "mine": {"done": 0, "total": len(items)}, "items": {"done": 0, "total": 6}}
    ]
    _submit(world, owner, items[0], [40, 40, 160, 80], "hello")
    progress = client.get("/api/tasks/progress").json()
    assert progress["mine"] == {"done": 1, "total": len(items)}
    assert progress["batches"][0]["items"] == {"done": 1, "total": 6}
    # The queue page: one row per item with its thumbnail, name, task; the progress above.
    page = client.get("/annotate", headers={"Accept": "text/html"}).text
    assert f"1 of {len(items)}</strong> submitted" in page
    assert page.count('/thumbnail" alt=""') == len(items)
    assert items[1]["name"] in page and f'<td class="mine">1 / {len(items)}</td>' in page
    assert f'id="start-next" href="/annotate/{items[1]["annotation_id"]}"' in page


def test_the_next_draft_follows_the_queue_and_wraps_round(world):
    world.set_double_rate(0.0)
    import_named(world, "b-next", frames=6)
    owner = max(("ann1", "ann2", "ann3"), key=lambda name: len(my_items(world, name)))
    items = my_items(world, owner)
    assert len(items) >= 3
    client = world.client(owner)
    ids = [item["annotation_id"] for item in items]
    following = client.get("/api/tasks/next", params={"after": ids[0]}).json()
    assert following == {"annotation_id": ids[1], "url": f"/annotate/{ids[1]}", "drafts_left": len(ids) - 1}
    _submit(world, owner, items[1], [40, 40, 160, 80], "hello")
    assert client.get("/api/tasks/next", params={"after": ids[0]}).json()["annotation_id"] == ids[2]
    # From the last item the queue wraps round to the first draft.
    assert client.get("/api/tasks/next", params={"after": ids[-1]}).json()["annotation_id"] == ids[0]
    for item in items:
        if item["annotation_id"] != ids[1]:
            _submit(world, owner, item, [40, 40, 160, 80], "hello")
    done = client.get("/api/tasks/next", params={"after": ids[-1]}).json()
    assert done == {"annotation_id": None, "url": None, "drafts_left": 0}
    assert world.client("rita").get("/api/tasks/next").status_code == 403


def test_without_an_upload_manifest_the_queue_names_frames(world):
    world.set_double_rate(0.0)
    world.import_batch("b-unnamed", frames=2)  # frames and AI manifests only
    items = [item for name in ("ann1", "ann2", "ann3") for item in my_items(world, name)]
    assert len(items) == 2 and all(item["name"] == item["frame_id"] for item in items)


def test_the_next_draft_and_progress_of_plain_rows():
    rows = [
        QueueRow("a1", "i1", "b", "f1", "ocr", "f1", "submitted", ""),
        QueueRow("a2", "i2", "b", "f2", "ocr", "f2", "draft", ""),
        QueueRow("a3", "i3", "b", "f3", "ocr", "f3", "draft", ""),
    ]
    assert next_draft(rows, None).annotation_id == "a2"
    assert next_draft(rows, "a2").annotation_id == "a3"
    assert next_draft(rows, "a3").annotation_id == "a2"
    assert next_draft(rows[:2], "a2") is None
    assert Progress(1, 3).percent == 33 and Progress(0, 0).percent == 100


def _item_id(world: World, annotation_id: str) -> str:
    from sqlalchemy.orm import Session

    from qwen_dataset.db.models import HumanAnnotation

    with Session(world.engine) as session:
        item_id = session.get(HumanAnnotation, annotation_id).item_id
    assert item_id is not None
    return item_id


def test_a_pdf_page_is_named_with_its_page(tmp_path):
    from qwen_dataset.workbench.assignment import source_name

    frame = pd.Series({"upload_id": "u1", "page": 3})
    assert source_name({"u1": "report.pdf"}, frame) == "report.pdf (page 3)"
    assert source_name({"u1": "a.png"}, pd.Series({"upload_id": "u1", "page": None})) == "a.png"
    assert source_name({}, frame) == ""
