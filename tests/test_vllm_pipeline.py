"""The whole graph with Qwen3-VL on vLLM instead of RapidOCR: a resource swap, real HTTP.

The vLLM server is the loopback fake of tests/vllm_fake_server.py, which validates requests as
`vllm serve` does; the resource, client and assets are the production code.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from dagster import DagsterInstance
from PIL import Image

from qwen_dataset.db.engine import sqlite_url
from qwen_dataset.definitions import build_definitions
from resources.vlm import VllmPrelabelResource
from tests.vllm_fake_server import FakeVllm, FakeVllmServer, Reply

BATCH = "vlm"
RED, BLUE = (200, 30, 30), (40, 60, 210)


def answer(box: list[int], text: str) -> Reply:
    line = {"bbox_2d": box, "text_content": text, "language": "en", "font_style": "regular", "reading_order": 0}
    return Reply.json({"lines": [line]})


@pytest.fixture()
def root(tmp_path):
    inbox = tmp_path / "inbox" / BATCH
    inbox.mkdir(parents=True)
    Image.new("RGB", (1000, 400), RED).save(inbox / "wide.png")  # non-square frames: 0-1000 per axis
    Image.new("RGB", (300, 600), BLUE).save(inbox / "tall.png")
    return tmp_path


def run(root, instance, server):
    prelabel = VllmPrelabelResource(
        base_url=server.base_url,
        api_key="secret",
        max_retries=1,
        backoff_base_s=0.01,
        backoff_max_s=0.02,
        request_timeout_s=10,
    )
    defs = build_definitions(storage_root=str(root), database_url=sqlite_url(root / "db.sqlite"), prelabel=prelabel)
    instance.add_dynamic_partitions("batches", [BATCH])
    return defs.resolve_job_def("process_batch").execute_in_process(
        instance=instance,
        partition_key=BATCH,
        raise_on_error=False,
        run_config={"ops": {"augmented_dataset": {"config": {"pipelines": ["color"]}}}},
    )


def test_vllm_backend_drives_the_graph_and_reruns_only_failures(root):
    fake = FakeVllm(api_key="secret")
    fake.script(RED, answer([100, 250, 500, 750], "Wide"))
    fake.script(BLUE, Reply.error(500), Reply.error(500))  # both attempts (max_retries=1) fail
    instance = DagsterInstance.ephemeral()
    with FakeVllmServer(fake) as server:
        first = run(root, instance, server)
        assert first.success
        annotations = pd.read_parquet(root / "manifests" / "ai_annotations" / f"{BATCH}.parquet").set_index("status")
        ok, failed = annotations.loc["ok"], annotations.loc["failed"]
        assert ok["author"] == "Qwen/Qwen3-VL-4B-Instruct"
        # 0-1000 relative -> pixels of the 1000x400 frame.
        assert json.loads(ok["payload"])["regions"][0]["bbox"] == pytest.approx([100.0, 100.0, 500.0, 300.0])
        assert failed["error"].startswith("http_500")
        # The fake answers 400 to a request without a json_schema response_format (or with guided_json).
        seen = fake.requests_for(RED)[0]
        assert (seen.status, seen.schema_name) == (200, "ocr")

        fake.script(BLUE, answer([0, 0, 1000, 500], "Tall"))
        before = len(fake.seen)
        second = run(root, instance, server)
        assert second.success
        assert [seen.colour for seen in fake.seen[before:]] == [BLUE]  # the good frame was not re-sent
    after = pd.read_parquet(root / "manifests" / "ai_annotations" / f"{BATCH}.parquet")
    assert after["status"].tolist() == ["ok", "ok"]
    tall = after[after["payload"].str.contains("Tall")].iloc[0]
    assert json.loads(tall["payload"])["regions"][0]["bbox"] == pytest.approx([0.0, 0.0, 300.0, 300.0])
    lines = (root / "exports" / BATCH / "qwen_ocr.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_a_run_checks_the_server_once_and_stops_with_what_to_fix(root):
    fake = FakeVllm(api_key="the-right-key")
    instance = DagsterInstance.ephemeral()
    with FakeVllmServer(fake) as server:
        result = run(root, instance, server)  # run() sends api_key="secret": the wrong one
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["ai_annotations"]
    message = str(failures[0].event_specific_data.error)
    assert "HTTP 401" in message and "QWEN_VLLM_API_KEY" in message
    assert fake.seen == []  # not one chat request, so no failed row per frame
    assert not (root / "manifests" / "ai_annotations" / f"{BATCH}.parquet").exists()
