"""The real graph with all five tasks, on the default engine and on Qwen3-VL over the loopback vLLM server.

Each run must export every format of every task: written, listed in ``manifest.json`` (and no file
that the manifest does not list), and loadable by its own reader: pycocotools for COCO, the
project's Label Studio converter for the Label Studio tasks, the qwen-vl-finetune rules for JSONL.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance
from pycocotools.coco import COCO

from qwen_dataset.db.engine import sqlite_url
from qwen_dataset.definitions import build_definitions
from qwen_dataset.exporters.label_studio.importer import from_label_studio_export
from qwen_dataset.payloads import BOX_TASKS, TASK_ORDER
from qwen_dataset.prelabel.templates import load_template
from qwen_dataset.samples.batch import write_instruction_file
from qwen_dataset.samples.evaluate import evaluate_against_truth
from resources.vlm import VllmPrelabelResource
from tests.vllm_fake_server import FakeVllm, FakeVllmServer, Reply

BATCH = "all-tasks"
ALL_TASKS = {"ops": {"ai_annotations": {"config": {"tasks": list(TASK_ORDER)}}}}


def formats_of(task: str) -> set[str]:
    """The manifest formats one task's export must have."""
    names = {f"qwen_{task}_jsonl", f"messages_{task}_jsonl", f"trl_{task}_parquet", f"label_studio_{task}"}
    names.add(f"label_studio_{task}_config")
    return names | ({f"coco_{task}"} if task in BOX_TASKS else set())


def assert_manifest_lists_every_file(folder: Path) -> dict[str, dict]:
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = {entry["path"]: entry for entry in manifest["files"]}
    on_disk = {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and path.parts[len(folder.parts)] not in ("images", "videos") and path.name != "manifest.json"
    }
    assert on_disk == set(listed), on_disk ^ set(listed)
    return {entry["format"]: entry for entry in manifest["files"]}


def assert_qwen_jsonl_loads(path: Path, folder: Path) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines:
        sample = json.loads(line)
        human, answer = sample["conversations"]
        assert (human["from"], answer["from"]) == ("human", "gpt")
        media = sample.get("image", []) + sample.get("video", [])
        assert media and all((folder / item).is_file() for item in media), path.name
        assert human["value"].count("<image>") == len(sample.get("image", []))
        assert human["value"].count("<video>") == len(sample.get("video", []))
        assert "<image>" not in answer["value"] and "<video>" not in answer["value"]
        json.loads(answer["value"])  # the answer is Qwen3-VL's JSON
    return len(lines)


def assert_every_task_exported(root: Path) -> None:
    folder = root / "exports" / BATCH
    formats = assert_manifest_lists_every_file(folder)
    frames = pd.read_parquet(root / "manifests" / "frames" / f"{BATCH}.parquet")
    for task in TASK_ORDER:
        missing = formats_of(task) - set(formats)
        assert not missing, f"{task}: {sorted(missing)} not exported"
        assert formats[f"qwen_{task}_jsonl"]["records"] > 0, task
        assert (
            assert_qwen_jsonl_loads(folder / f"qwen_{task}.jsonl", folder) == formats[f"qwen_{task}_jsonl"]["records"]
        )
        exported = json.loads((folder / f"label_studio_{task}.json").read_text())
        records = from_label_studio_export(exported, frames, include_predictions=True)
        assert len(records) == len(exported) > 0, task
        assert all(record["status"] == "ok" for record in records), [r["error"] for r in records if r["error"]]
        if task in BOX_TASKS:
            with contextlib.redirect_stdout(io.StringIO()):
                coco = COCO(str(folder / "annotations" / f"instances_{task}.json"))
            assert coco.getImgIds() and all(
                (folder / "images" / i["file_name"]).is_file() for i in coco.dataset["images"]
            )
    assert {"action_dsl", "csv", "llamafactory_dataset_info"} <= set(formats)


def run_batch(root: Path, **kwargs):
    defs = build_definitions(storage_root=str(root), database_url=sqlite_url(root / "annotations.db"), **kwargs)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("batches", [BATCH])
    run_config = {"ops": {**ALL_TASKS["ops"], "augmented_dataset": {"config": {"pipelines": ["color"]}}}}
    return defs.resolve_job_def("process_batch").execute_in_process(
        instance=instance, partition_key=BATCH, raise_on_error=False, run_config=run_config
    )


def sample_root(tmp_path: Path, sample) -> Path:
    folder, truth = sample
    root = tmp_path / "storage"
    shutil.copytree(folder, root / "inbox" / BATCH)
    write_instruction_file(truth, root / "inbox", BATCH)
    return root


def failed_steps(result) -> list[str]:
    return [str(event.event_specific_data) for event in result.all_events if event.event_type_value == "STEP_FAILURE"]


@pytest.mark.slow  # real OCR and the classical engines over the whole sample batch
def test_all_five_tasks_on_the_default_engine(tmp_path, sample) -> None:
    root = sample_root(tmp_path, sample)
    result = run_batch(root)
    assert result.success, failed_steps(result)
    assert_every_task_exported(root)
    manifests = {
        name: pd.read_parquet(root / "manifests" / name / f"{BATCH}.parquet")
        for name in ("raw_uploads", "frames", "human_corrections")
    }
    accuracy = {row.task: row for row in evaluate_against_truth(sample[1], *manifests.values())}
    assert accuracy["gui_action"].figures["element_recall"] >= 0.7
    assert accuracy["gui_action"].figures["target_accuracy"] == 1.0  # every screen's instruction hits its element
    assert accuracy["spatial"].figures["relation_accuracy"] >= 0.8
    assert accuracy["video_event"].figures["boundary_error_s"] <= 0.1


def answer_by_schema(body: dict) -> Reply:
    """Every task's request answered with its template's own example (a valid Qwen3-VL answer)."""
    name = body["response_format"]["json_schema"]["name"]
    return Reply.json(load_template(name).example)


@pytest.mark.slow  # the whole graph, QC and augmentation included (~80 s here)
def test_all_five_tasks_on_the_vllm_backend(tmp_path, sample) -> None:
    root = sample_root(tmp_path, sample)
    # The OCR figures are not this test's subject: a smaller batch (two screens, a PDF, the video).
    inbox = root / "inbox" / BATCH
    for path in inbox.iterdir():
        if path.name not in {"screen_1_login.png", "screen_4_settings.png", "document.pdf", "clip.mp4"}:
            path.unlink()
    instructions = {"screen_1_login.png": "点击登录按钮", "screen_4_settings.png": "Cancel the changes"}
    (root / "inbox" / f"{BATCH}.instructions.json").write_text(json.dumps(instructions), encoding="utf-8")
    fake = FakeVllm(api_key="secret", default=answer_by_schema)
    with FakeVllmServer(fake) as server:
        prelabel = VllmPrelabelResource(base_url=server.base_url, api_key="secret", max_retries=0, request_timeout_s=20)
        result = run_batch(root, prelabel=prelabel)
    assert result.success, failed_steps(result)
    assert {seen.schema_name for seen in fake.seen} == set(TASK_ORDER)
    gui_prompts = [" ".join(seen.texts) for seen in fake.seen if seen.schema_name == "gui_action"]
    assert any("点击登录按钮" in prompt for prompt in gui_prompts)  # the batch's instruction file reached the model
    assert_every_task_exported(root)


def test_the_export_check_fails_when_one_task_is_missing(tmp_path) -> None:
    """The check above is not vacuous: an export without one task's files fails it."""
    folder = tmp_path / "exports" / BATCH
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"files": []}))
    (tmp_path / "manifests" / "frames").mkdir(parents=True)
    pd.DataFrame({"frame_id": []}).to_parquet(tmp_path / "manifests" / "frames" / f"{BATCH}.parquet")
    with pytest.raises(AssertionError, match="not exported"):
        assert_every_task_exported(tmp_path)
