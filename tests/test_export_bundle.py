"""The export folder as a whole: all or nothing, videos for Label Studio, media URLs a data engineer sets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from dagster import build_asset_context

from assets.export import exports
from qwen_dataset.exporters import bundle as bundle_module
from qwen_dataset.exporters.label_studio.media import check_media_prefix, default_media_prefix, media_urls
from qwen_dataset.payloads import TASK_ORDER
from qwen_dataset.store.layout import StorageLayout
from resources.storage import StorageResource
from tests.export_bundle import BATCH, export_bundle, manifests, write_export


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN_STORAGE_CACHE", str(tmp_path / "cache"))


def snapshot(folder) -> dict[str, str]:
    """Every file under an export folder (local or remote) with its sha256."""
    if isinstance(folder, Path):
        return {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*")
            if p.is_file()
        }
    base = folder.path.rstrip("/")
    return {
        name[len(base) + 1 :]: hashlib.sha256(folder.fs.cat_file(name)).hexdigest() for name in folder.fs.find(base)
    }


def listed(folder) -> set[str]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {f["path"] for f in manifest["files"]} | {"manifest.json"}


@pytest.mark.parametrize("where", ["folder", "memory"])
def test_a_failing_format_leaves_the_previous_export_byte_identical(tmp_path, monkeypatch, where) -> None:
    root = tmp_path / "root" if where == "folder" else f"memory://export-{tmp_path.name}"
    bundle = export_bundle(root)
    before = snapshot(bundle.folder)
    assert {name for name in before if not name.startswith(("images/", "videos/"))} == listed(bundle.folder)

    class FailsOnSpatial(bundle_module.LabelStudioWriter):
        def add(self, annotation):
            if annotation.task == "spatial":  # the third task: files of two tasks are written by then
                raise RuntimeError("the Label Studio exporter broke")
            super().add(annotation)

    monkeypatch.setattr(bundle_module, "LabelStudioWriter", FailsOnSpatial)
    # The new export differs in the tasks written before the failure (a corrected OCR text), and
    # drops a task: written in place, either would show.
    changed = bundle.annotations[bundle.annotations["task"] != "video_event"].copy()
    changed["payload"] = changed["payload"].str.replace("营业收入", "营业支出")
    with pytest.raises(RuntimeError, match="broke"):
        write_export(bundle.layout, bundle.frames, changed)
    assert snapshot(bundle.folder) == before
    if where == "folder":
        assert sorted(p.name for p in (tmp_path / "root" / "exports").iterdir()) == [BATCH]  # no staging left


def test_a_new_export_replaces_the_folder_with_exactly_its_own_files(tmp_path) -> None:
    bundle = export_bundle(tmp_path / "root")
    (bundle.folder / "stray.txt").write_text("not ours")
    fewer = bundle.annotations[bundle.annotations["task"] != "video_event"]
    write_export(bundle.layout, bundle.frames, fewer)
    names = set(snapshot(bundle.folder))
    assert {n for n in names if not n.startswith("images/")} == listed(bundle.folder)
    assert "stray.txt" not in names and not (bundle.folder / "videos").exists()


def test_a_crash_between_the_two_renames_is_repaired_by_the_next_export(tmp_path) -> None:
    bundle = export_bundle(tmp_path / "root")
    before = snapshot(bundle.folder)
    aside = bundle.folder.parent / f".{BATCH}.previous-0123456789ab"
    bundle.folder.rename(aside)  # what a crash right after the first rename leaves
    with StorageLayout(tmp_path / "root").publishing(bundle.folder, mirror=True) as staging:
        assert snapshot(bundle.folder) == before  # the previous export is back before anything is written
        (staging / "manifest.json").write_text("{}")
    assert not aside.exists() and snapshot(bundle.folder).keys() == {"manifest.json"}


def test_the_exports_asset_writes_every_task_with_video_urls_from_the_configured_prefix(tmp_path) -> None:
    layout = StorageLayout(tmp_path / "root")
    layout.ensure()
    frames, annotations, video = manifests(layout)
    storage = StorageResource(root=str(tmp_path / "root"), label_studio_media_url="https://files.example/qwen")
    context = build_asset_context(partition_key=BATCH, resources={"storage": storage})
    table = exports(context, human_corrections=annotations, frames=frames)
    folder = layout.exports(BATCH)
    formats = set(table["format"])
    for task in TASK_ORDER:
        assert {
            f"qwen_{task}_jsonl",
            f"messages_{task}_jsonl",
            f"trl_{task}_parquet",
            f"label_studio_{task}",
        } <= formats
    (ls_task,) = json.loads((folder / "label_studio_video_event.json").read_text())
    assert ls_task["data"]["video"] == f"https://files.example/qwen/exports/{BATCH}/videos/{video}.mp4"
    assert (folder / "videos" / f"{video}.mp4").read_bytes() == layout.blobs.read_bytes(layout.blobs.uri_for(video))
    image_task = json.loads((folder / "label_studio_ocr.json").read_text())[0]
    assert image_task["data"]["image"].startswith(f"https://files.example/qwen/exports/{BATCH}/images/")


def test_media_url_forms() -> None:
    root = Path("/srv/qwen data")
    assert default_media_prefix(root) == "/data/local-files/?d=srv/qwen%20data/"
    assert (
        media_urls(root, "exports/b1")("images/f.png") == "/data/local-files/?d=srv/qwen%20data/exports/b1/images/f.png"
    )
    assert media_urls(root, "releases/v1", "/data/local-files/?d=qwen")("videos/u.mp4") == (
        "/data/local-files/?d=qwen/releases/v1/videos/u.mp4"
    )
    assert (
        media_urls(root, "exports/b1", "s3://bucket/qwen/")("images/f.png")
        == "s3://bucket/qwen/exports/b1/images/f.png"
    )
    assert check_media_prefix("https://cdn.example/q") == "https://cdn.example/q/"
    with pytest.raises(ValueError, match="QWEN_LABEL_STUDIO_MEDIA_URL='images/'.*local-files"):
        check_media_prefix("images/")


def test_trl_row_groups_close_at_their_picture_budget(tmp_path, monkeypatch) -> None:
    import pyarrow.parquet as pq

    from qwen_dataset.exporters import trl

    bundle = export_bundle(tmp_path / "root")
    monkeypatch.setattr(trl, "GROUP_BYTES", 1)  # every sample's pictures exceed one byte
    path = tmp_path / "spatial.parquet"
    refs = {p.stem: f"images/{p.name}" for p in (bundle.folder / "images").iterdir()}
    rows = trl.export_trl_parquet(
        bundle.annotations, bundle.frames, path, refs.__getitem__, task="spatial", media_root=bundle.folder
    )
    assert rows == 2 and pq.ParquetFile(path).num_row_groups == 2


def test_the_one_pass_bundle_writes_what_each_exporter_writes_alone(tmp_path) -> None:
    """The bundle parses each payload once for all its writers; every file equals the standalone export's."""
    import pyarrow.parquet as pq

    from qwen_dataset.exporters.coco import export_coco
    from qwen_dataset.exporters.csv_export import export_csv
    from qwen_dataset.exporters.label_studio.export import export_label_studio
    from qwen_dataset.exporters.messages import export_messages_jsonl
    from qwen_dataset.exporters.qwen_jsonl import export_qwen_jsonl
    from qwen_dataset.exporters.trl import export_trl_parquet

    bundle = export_bundle(tmp_path / "root")
    folder, alone = bundle.folder, tmp_path / "alone"
    refs = {p.stem: f"images/{p.name}" for p in (folder / "images").iterdir()}
    a, f = bundle.annotations, bundle.frames
    url = media_urls(bundle.layout.root, f"exports/{BATCH}")

    def video_url(upload_id: str) -> str:
        return url(f"videos/{next((folder / 'videos').glob(upload_id + '.*')).name}")

    def same_bytes(name: str) -> None:
        assert (alone / name).read_bytes() == (folder / name).read_bytes(), name

    for task in TASK_ORDER:
        export_qwen_jsonl(a, f, alone / f"qwen_{task}.jsonl", refs.__getitem__, task=task)
        same_bytes(f"qwen_{task}.jsonl")
        export_messages_jsonl(a, f, alone / f"messages_{task}.jsonl", refs.__getitem__, task=task)
        same_bytes(f"messages_{task}.jsonl")
        image_url = lambda frame_id: url(refs[frame_id])  # noqa: E731
        export_label_studio(a, f, alone / f"label_studio_{task}.json", image_url, task=task, video_url=video_url)
        same_bytes(f"label_studio_{task}.json")
        export_trl_parquet(a, f, alone / "trl.parquet", refs.__getitem__, task=task, media_root=folder)
        assert pq.read_table(alone / "trl.parquet").equals(pq.read_table(folder / f"trl_{task}.parquet")), task
        if task != "video_event":
            export_coco(a, f, alone / "coco.json", lambda frame_id: Path(refs[frame_id]).name, task=task)
            ours, theirs = (
                json.loads(p.read_text())
                for p in (alone / "coco.json", folder / "annotations" / f"instances_{task}.json")
            )
            assert {k: v for k, v in ours.items() if k != "info"} == {k: v for k, v in theirs.items() if k != "info"}
    export_csv(a, f, alone / "annotations.csv", refs.__getitem__)
    same_bytes("annotations.csv")
    bundle_module.write_action_dsl(a, alone / "actions.dsl", refs.__getitem__)
    same_bytes("actions.dsl")
