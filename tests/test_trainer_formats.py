"""Every dataset file of a batch export and of a release, loaded by the tool that reads it.

Hugging Face ``datasets`` (every JSONL and Parquet file, all tasks of the batch at once), TRL's
own message preparation, pycocotools, Datumaro and LLaMA-Factory (each in its own venv, see
``tests/tools``). The export holds all five tasks, with real pictures and a real H.264 video.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from datasets import Image, List, Value, load_dataset
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from trl import prepare_multimodal_messages

from qwen_dataset.exporters.bundle import release_formats_writer
from qwen_dataset.payloads import BOX_TASKS, TASK_ORDER
from qwen_dataset.release.assemble import BatchExport, assemble_release
from tests.export_bundle import BATCH, Bundle, export_bundle
from tests.tools import run_script

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Bundle:
    return export_bundle(tmp_path_factory.mktemp("trainer") / "root")


@pytest.fixture(scope="module")
def release_folder(bundle: Bundle) -> Path:
    layout = bundle.layout
    info = assemble_release(
        [BatchExport(BATCH, bundle.frames, bundle.annotations, bundle.folder)],
        Path(layout.releases),
        blobs=layout.blobs,
        write_formats=release_formats_writer(layout.blobs, layout.root),
    )
    return info.path


@pytest.fixture(params=["export", "release"])
def folder(request, bundle: Bundle, release_folder: Path) -> Path:
    return bundle.folder if request.param == "export" else release_folder


@pytest.fixture(autouse=True)
def offline_datasets(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    # Relative paths must not work by accident: nothing runs from the dataset folder.
    monkeypatch.chdir(tmp_path)


def samples_per_task(bundle: Bundle) -> dict[str, int]:
    manifest = json.loads((bundle.folder / "manifest.json").read_text())
    return {
        f["format"][len("qwen_") : -len("_jsonl")]: f["records"]
        for f in manifest["files"]
        if f["format"].startswith("qwen_")
    }


def load(kind: str, files: list[Path]) -> Any:
    return load_dataset(kind, data_files=[str(f) for f in files], split="train")


def test_every_task_has_its_files(bundle: Bundle, folder: Path) -> None:
    assert set(samples_per_task(bundle)) == set(TASK_ORDER)
    for task in TASK_ORDER:
        for name in (f"qwen_{task}.jsonl", f"messages_{task}.jsonl", f"trl_{task}.parquet", f"label_studio_{task}.xml"):
            assert (folder / name).is_file(), name
    assert sorted(p.name for p in (folder / "annotations").iterdir()) == sorted(
        f"instances_{t}.json" for t in BOX_TASKS
    )


# --------------------------------------------------------------------------------------------
# Hugging Face datasets


def test_qwen_jsonl_of_all_tasks_load_together(bundle: Bundle, folder: Path) -> None:
    dataset = load("json", sorted(folder.glob("qwen_*.jsonl")))
    assert len(dataset) == sum(samples_per_task(bundle).values())
    assert dataset.features["image"] == List(Value("string"))
    for row in dataset:
        human, answer = row["conversations"]
        assert (human["from"], answer["from"]) == ("human", "gpt")
        assert human["value"].count("<image>") == len(row["image"]) >= 1 and "<image>" not in answer["value"]
        assert all((folder / image).is_file() for image in row["image"])


def test_messages_jsonl_of_all_tasks_load_together(bundle: Bundle, folder: Path) -> None:
    dataset = load("json", sorted(folder.glob("messages_*.jsonl")))
    assert len(dataset) == sum(samples_per_task(bundle).values())
    assert dataset.features["images"] == List(Value("string"))
    for row in dataset:
        tags = sum(message["content"].count("<image>") for message in row["messages"])
        assert tags == len(row["images"]) and [m["role"] for m in row["messages"]] == ["user", "assistant"]


def test_trl_parquet_of_all_tasks_load_together_with_images(bundle: Bundle, folder: Path) -> None:
    dataset = load("parquet", sorted(folder.glob("trl_*.parquet")))
    assert len(dataset) == sum(samples_per_task(bundle).values())
    assert dataset.features["images"] == List(Image())
    sizes = {(int(w), int(h)) for w, h in zip(bundle.frames["width"], bundle.frames["height"])}
    decoded = [picture.size for row in dataset for picture in row["images"]]
    assert decoded and set(decoded) <= sizes  # the embedded bytes decode, from a folder that is not the dataset's


def test_release_manifests_load_in_datasets(bundle: Bundle, release_folder: Path) -> None:
    frames = load("parquet", [release_folder / "frames.parquet"])
    annotations = load("parquet", [release_folder / "annotations.parquet"])
    assert len(frames) == len(bundle.frames) and set(frames["split"]) <= {"train", "val", "test"}
    assert len(annotations) == int((bundle.annotations["status"] == "ok").sum())


# --------------------------------------------------------------------------------------------
# TRL


def test_trl_prepares_every_sample_with_its_images_in_place(bundle: Bundle, folder: Path) -> None:
    dataset = load("parquet", sorted(folder.glob("trl_*.parquet")))
    video_samples = 0
    for row in dataset:
        messages = prepare_multimodal_messages(row["messages"], row["images"])
        parts = [part for message in messages for part in message["content"]]
        filled = [part["image"] for part in parts if part["type"] == "image"]
        assert filled == row["images"] and all(picture is not None for picture in filled)
        assert not any("<image>" in (part.get("text") or "") for part in parts)
        user = messages[0]["content"]
        if len(row["images"]) > 1:  # a video: each frame right after its timestamp
            video_samples += 1
            kinds = [part["type"] for part in user]
            assert kinds[: 2 * len(row["images"])] == ["text", "image"] * len(row["images"])
            assert user[0]["text"] == "<0.0 seconds>" and user[2]["text"] == "<1.0 seconds>"
    assert video_samples == 1


# --------------------------------------------------------------------------------------------
# COCO: pycocotools and Datumaro


def coco_files(folder: Path) -> list[Path]:
    return sorted((folder / "annotations").glob("instances_*.json"))


def test_pycocotools_loads_every_coco_file_and_scores_ap_1(folder: Path) -> None:
    for path in coco_files(folder):
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
            assert all((folder / "images" / image["file_name"]).is_file() for image in coco.dataset["images"])
            assert all(annotation["segmentation"] == [] for annotation in coco.dataset["annotations"])
            detections = [{**a, "score": 1.0} for a in coco.dataset["annotations"]]
            evaluation = COCOeval(coco, coco.loadRes(detections), "bbox")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        assert evaluation.stats[0] == pytest.approx(1.0), path.name


def test_datumaro_imports_every_coco_file_with_one_box_per_annotation(folder: Path) -> None:
    report = run_script("datumaro", "datumaro_check.py", str(folder))
    assert report["version"] == "1.13.12" and "coco_instances" in report["detected"]
    assert sorted(report["files"]) == [path.name for path in coco_files(folder)]
    for path in coco_files(folder):
        coco = json.loads(path.read_text())
        seen = report["files"][path.name]
        task = path.stem.removeprefix("instances_")
        assert seen["subsets"] == [task] and seen["items"] == len(coco["images"]) and seen["missing_media"] == []
        assert seen["annotations"] == {"bbox": len(coco["annotations"])}  # no polygon twin of any box
        assert seen["boxes"] == sorted([round(v, 3) for v in a["bbox"]] for a in coco["annotations"])
        assert seen["labels"] == [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]


# --------------------------------------------------------------------------------------------
# LLaMA-Factory


def test_llamafactory_loads_every_messages_file_through_dataset_info(bundle: Bundle, folder: Path) -> None:
    info = json.loads((folder / "dataset_info.json").read_text())
    assert sorted(info) == sorted(f"messages_{task}" for task in TASK_ORDER)
    report = run_script("llamafactory", "llamafactory_check.py", str(folder))
    assert report["version"] == "0.9.5"
    expected = samples_per_task(bundle)
    for name, seen in report["datasets"].items():
        task = name.removeprefix("messages_")
        lines = (folder / info[name]["file_name"]).read_text().splitlines()
        assert seen["samples"] == len(lines) == expected[task], name  # LLaMA-Factory dropped nothing
        assert seen["vision_blocks"] == seen["images"] >= seen["samples"] and seen["missing"] == []
