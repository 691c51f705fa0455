"""The Label Studio files of an export in a real Label Studio 1.23 server (its own venv, started here).

For every task: a project from ``label_studio_<task>.xml``, the tasks of ``label_studio_<task>.json``
imported with their predictions, every picture and video loaded through the URL the export wrote
(the default form: Label Studio's local files, with ``LOCAL_FILES_DOCUMENT_ROOT=/`` and a Local
Storage on the export folder, as the README says), a reviewer's annotation submitted, and the
project's export read back as human corrections over the AI's annotations.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qwen_dataset.db.corrections import apply_corrections
from qwen_dataset.exporters.label_studio.importer import from_label_studio_export
from qwen_dataset.payloads import TASK_ORDER, iter_boxes
from qwen_dataset.records import AnnotationRecord, load_payload, to_frame
from tests.export_bundle import Bundle, export_bundle
from tests.tools.label_studio import USER, LabelStudio, label_studio_server

pytestmark = pytest.mark.slow  # a Django server: ~5 s to start from the template, ~30 s to make it once

SHIFT_PERCENT = 2.0  # the reviewer moves the left edge of every image task's first rectangle right by this much


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Bundle:
    return export_bundle(tmp_path_factory.mktemp("ls-export") / "root")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LabelStudio:
    with label_studio_server(tmp_path_factory.mktemp("ls-server"), Path("/")) as client:
        yield client


def read_tasks(bundle: Bundle, task: str) -> list[dict[str, Any]]:
    return json.loads((bundle.folder / f"label_studio_{task}.json").read_text())


def reviewed(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reviewer's version of a prediction: the first region's left edge moved right (the box stays
    inside the picture: an import refuses a box that leaves it)."""
    result = copy.deepcopy(result)
    moved = next((r["id"] for r in result if r.get("type") in ("rectanglelabels", "rectangle")), None)
    for item in result:
        if moved is not None and item.get("id") == moved and "x" in item.get("value", {}):
            item["value"]["x"] += SHIFT_PERCENT
            item["value"]["width"] -= SHIFT_PERCENT
    return result


def media_of(ls_task: dict[str, Any]) -> str:
    return ls_task["data"].get("image") or ls_task["data"]["video"]


def project_for(server: LabelStudio, bundle: Bundle, task: str) -> int:
    config = (bundle.folder / f"label_studio_{task}.xml").read_text()
    project = server.api("post", "/api/projects", 201, json={"title": f"qwen {task}", "label_config": config}).json()
    # Label Studio serves a local file only below a Local Storage of a project the user can see.
    storage = {"project": project["id"], "title": "export", "path": str(bundle.folder), "use_blob_urls": True}
    server.api("post", "/api/storages/localfiles", 201, json=storage)
    return project["id"]


def test_every_task_file_imports_shows_its_media_and_comes_back_as_human_corrections(server, bundle) -> None:
    assert server.api("get", "/api/version").json()["release"] == "1.23.2"
    imported: list[dict[str, Any]] = []
    for task in TASK_ORDER:
        tasks = read_tasks(bundle, task)
        project = project_for(server, bundle, task)
        answer = server.api("post", f"/api/projects/{project}/import", 201, json=tasks).json()
        assert (answer["task_count"], answer["prediction_count"]) == (len(tasks), len(tasks)), task
        for ls_task in server.api("get", "/api/tasks", params={"project": project}).json()["tasks"]:
            url = media_of(ls_task)
            assert url.startswith("/data/local-files/?d="), url
            media = server.api("get", url)
            kind = "video/" if "video" in ls_task["data"] else "image/"
            assert media.headers["content-type"].startswith(kind), (url, media.headers["content-type"])
            local = Path("/") / url.removeprefix("/data/local-files/?d=")
            assert media.content == local.read_bytes()
            prediction = server.api("get", f"/api/tasks/{ls_task['id']}").json()["predictions"][0]
            body = {"result": reviewed(prediction["result"]), "was_cancelled": False, "lead_time": 3.0}
            server.api("post", f"/api/tasks/{ls_task['id']}/annotations/", 201, json=body)
        imported.extend(exported_with_emails(server, project))
        plain = server.api("get", f"/api/projects/{project}/export", params={"exportType": "JSON"}).json()
        ids = {record["author"] for record in from_label_studio_export(plain, bundle.frames)}
        assert ids == {"label-studio:1"}, ids  # the plain export names the user by id only

    records = from_label_studio_export(imported, bundle.frames)
    assert [r["error"] for r in records if r["status"] != "ok"] == []
    assert {r["author"] for r in records} == {f"label-studio:{USER}"}
    human = to_frame([AnnotationRecord(**r) for r in records], AnnotationRecord)
    merged = apply_corrections(bundle.annotations[bundle.annotations["status"] == "ok"], human)
    assert len(merged) == len(human) == len(bundle.annotations[bundle.annotations["status"] == "ok"])
    assert merged["author"].eq(f"label-studio:{USER}").all() and merged["reviewed"].all()
    assert_corrections_kept(bundle, merged)


def exported_with_emails(server: LabelStudio, project: int) -> list[dict[str, Any]]:
    """A snapshot export whose ``completed_by`` carries the annotator's email (not just the id)."""
    options = {"annotations__completed_by": {"only_id": False}}
    body = {"title": "qwen", "serialization_options": options, "task_filter_options": {"only_with_annotations": True}}
    snapshot = server.api("post", f"/api/projects/{project}/exports/", 201, json=body).json()
    return server.api(
        "get", f"/api/projects/{project}/exports/{snapshot['id']}/download", params={"exportType": "JSON"}
    ).json()


def assert_corrections_kept(bundle: Bundle, merged: pd.DataFrame) -> None:
    """Every box came back within 1 px, the first one of each image annotation with the reviewer's edit."""
    original = bundle.annotations.set_index(["frame_id", "task"])
    sizes = dict(zip(bundle.frames["frame_id"], bundle.frames["width"]))
    for row in merged.itertuples(index=False):
        before = load_payload(original.loc[(row.frame_id, row.task), "payload"])
        after = load_payload(row.payload)
        old_boxes = [box.item["bbox"] for box in iter_boxes(row.task, before)]
        new_boxes = [box.item["bbox"] for box in iter_boxes(row.task, after)]
        assert len(new_boxes) == len(old_boxes), row.task
        for index, (old, new) in enumerate(zip(old_boxes, new_boxes)):
            shift = SHIFT_PERCENT / 100 * sizes[row.frame_id] if index == 0 else 0.0
            expected = [old[0] + shift, old[1], old[2], old[3]]
            assert max(abs(a - b) for a, b in zip(new, expected)) <= 1.0, (row.task, index, old, new)
        if row.task == "video_event":
            times = [t for event in after["events"] for t in (event["start"], event["end"])]
            # Frame-accurate on the timeline: within half a frame at the config's 25 fps.
            assert times == pytest.approx(
                [t for e in before["events"] for t in (e["start"], e["end"])], abs=0.02 + 1e-9
            )
