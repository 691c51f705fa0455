"""A data engineer operates the pipeline in the Dagster UI: headless Chromium against ``dagster dev``.

The test starts ``dagster dev`` (webserver, daemon, code server) on a free loopback port with
the sample batch in a temporary inbox, then in the browser: reads the lineage from
``raw_uploads`` to ``release`` on the asset graph, opens the ``process_batch`` job, adds the
batch as a partition with the launch dialog's "Add a partition", clicks "Launch 1 run", follows
the toast to the run page and waits for "Success", and finally opens the batch's ``qc_report``
partition and finds its QC summary table and figures. A screenshot of that page is left in the
test's tmp dir.

Needs Chromium at ``/usr/bin/chromium`` (``apt-get install -y chromium``); Playwright never
downloads a browser here. ``QWEN_SKIP_BROWSER=1`` skips the test on a machine without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest

from assets.jobs import PIPELINE_ASSETS
from tests.ops_helpers import (
    LOCATION,
    copy_batch,
    dagster_dev,
    run_status,
    sample_batch,
    stop_sensor,
)

pytestmark = pytest.mark.slow  # starts real Dagster services: tens of seconds
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
BATCH = "ui-sample"
UI_TIMEOUT_MS = 30_000
RUN_TIMEOUT_MS = 180_000
# Upstream to downstream: the graph is laid out left to right, so along this chain the nodes
# must appear in this order.
LINEAGE = ["raw_uploads", "frames", "ai_annotations", "human_corrections", "qc_report", "exports", "release"]
ASSET_NAME = "[class*='AssetNode_assetName']"


@pytest.fixture()
def browser():
    if os.environ.get("QWEN_SKIP_BROWSER") == "1":
        pytest.skip("QWEN_SKIP_BROWSER=1")
    assert CHROMIUM.exists(), f"missing {CHROMIUM}: apt-get install -y chromium (or set QWEN_SKIP_BROWSER=1)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(UI_TIMEOUT_MS)
    return page


@contextlib.contextmanager
def screenshot_on_failure(page, path: Path):
    """Leave a picture of the page in the tmp dir when a step fails (the assertion says what)."""
    try:
        yield
    except BaseException:
        page.screenshot(path=str(path), full_page=True)
        raise


def asset_node(page, name: str):
    return page.locator(ASSET_NAME).filter(has_text=re.compile(f"^{re.escape(name)}$"))


def read_lineage(page, base: str) -> list[float]:
    """The x position of each asset of :data:`LINEAGE` on release's upstream lineage graph."""
    page.goto(f"{base}/assets/release?view=lineage&lineageScope=upstream&lineageDepth=20")
    positions = []
    for name in LINEAGE:
        node = asset_node(page, name)
        node.wait_for(state="visible")
        positions.append(node.bounding_box()["x"])
    return positions


def graphql_operation(request) -> str | None:
    if "/graphql" not in request.url or not request.post_data:
        return None
    with contextlib.suppress(ValueError):
        return json.loads(request.post_data).get("operationName")
    return None


def open_launch_dialog(page) -> None:
    """Click "Materialize all…" and wait until the dialog has loaded every asset's partition status.

    A partition added before that load completes is dropped from the selection when it lands
    (Dagster 1.13's dialog, about one time in four here), so the test waits like a user who
    lets the dialog settle: the dialog asks for one PartitionHealthQuery per asset."""
    finished: list[str | None] = []
    page.on("requestfinished", lambda request: finished.append(graphql_operation(request)))
    page.get_by_role("button", name="Materialize all…").click()
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while finished.count("PartitionHealthQuery") < len(PIPELINE_ASSETS):
        assert time.monotonic() < deadline, f"the launch dialog did not load partition health: {finished}"
        page.wait_for_timeout(50)  # lets Playwright deliver the browser's events


def launch_batch_from_job_page(page, base: str, batch: str) -> str:
    """Materialize all of process_batch for a new partition, all through the UI; returns the run id."""
    page.goto(f"{base}/locations/{LOCATION}/jobs/process_batch")
    open_launch_dialog(page)
    launch = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    launch.get_by_role("button", name="Add a partition").click()
    add = page.get_by_role("dialog").filter(has_text="Add a partition for batches")
    add.get_by_role("textbox").fill(batch)
    add.get_by_role("button", name="Save").click()
    launch.get_by_role("button", name="Launch 1 run").click()
    page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}$")).wait_for()
    page.locator("a[href^='/runs/']").filter(has_text=re.compile("^View$")).click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    return page.url.rsplit("/runs/", 1)[1].split("?")[0]


def test_engineer_launches_a_batch_and_reads_its_quality_in_the_ui(tmp_path, browser, tmp_path_factory):
    folder, _ = sample_batch(tmp_path_factory)
    root = tmp_path / "storage"
    copy_batch(folder, root, BATCH)
    with dagster_dev(tmp_path, root) as services:
        stop_sensor(services, "inbox_sensor")  # this batch is launched by hand, not by the sensor
        page = new_page(browser)
        with screenshot_on_failure(page, tmp_path / "failure.png"):
            positions = read_lineage(page, services.url)
            assert positions == sorted(positions) and len(set(positions)) == len(positions), dict(
                zip(LINEAGE, positions)
            )

            run_id = launch_batch_from_job_page(page, services.url, BATCH)
            page.get_by_text(f"partition: {BATCH}").wait_for()
            page.get_by_text("Success", exact=True).first.wait_for(timeout=RUN_TIMEOUT_MS)
            assert run_status(services, run_id) == "SUCCESS"

            page.goto(f"{services.url}/assets/qc_report?view=partitions&partition={BATCH}")
            page.get_by_text("summary", exact=True).wait_for()
            page.get_by_text(run_id[:8], exact=True).first.wait_for()  # the latest materialization is this run's
            for shown in ("qc/ai_failure_rate", "report_html", "mean_iou", "> 0.85", "ai_failure_rate"):
                page.get_by_text(shown, exact=True).first.wait_for()
            # The summary's own count table: nested in the metadata table, so the last one holding the counts.
            summary = page.get_by_role("table").filter(has_text="unreviewed").last.inner_text()
            shown_frames = re.search(r"^frames\s+(\d+)$", summary, re.MULTILINE)

            page.goto(f"{services.url}/assets/qc_report")
            page.get_by_text("Upstream assets", exact=True).wait_for()
            for neighbour in ("ai_annotations", "human_corrections", "exports"):  # upstream / downstream lists
                page.locator(f"a[href='/assets/{neighbour}']").first.wait_for()
            page.goto(f"{services.url}/assets/qc_report?view=partitions&partition={BATCH}")
            page.get_by_text("summary", exact=True).wait_for()
            screenshot = tmp_path / "qc_report.png"
            page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    frames = pd.read_parquet(root / "manifests" / "frames" / f"{BATCH}.parquet")
    assert shown_frames and int(shown_frames.group(1)) == len(frames), summary  # the UI shows the batch's figures
    assert (root / "exports" / "reports" / f"{BATCH}.json").is_file()
