"""The workbench in a real browser: headless Debian Chromium driven by Playwright, the real
Label Studio editor (the pinned npm build), the app in a uvicorn thread on 127.0.0.1:0.

An annotator signs in, drags the AI's pre-filled box, retypes its text and submits: the database
holds the new geometry. Then a reviewer opens a disagreement, moves a box of one version and
saves it as the arbitrated final version.

Needs ``apt-get install -y chromium`` (``/usr/bin/chromium``) and ``npm ci --ignore-scripts``
(the editor build under ``node_modules``); ``QWEN_SKIP_BROWSER=1`` skips it on a machine
without them. Playwright never downloads a browser here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_dataset.db.engine import sqlite_url
from qwen_dataset.db.models import ItemStatus
from qwen_dataset.db.queries import final_annotations
from tests.test_workbench_api import (
    AI_AUTHOR,
    AI_BOX,
    AI_EVENTS,
    HEIGHT,
    PASSWORD,
    WIDTH,
    World,
    _submit,
    build_world,
    item_of,
    my_items,
    ocr_payload,
    running_server,
    write_batch,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
EDITOR_BUILD = (
    Path(__file__).resolve().parents[2] / "node_modules" / "@heartexlabs" / "label-studio" / "build" / "static"
)
TIMEOUT_MS = 20_000
#: The picture inside the Label Studio editor (an arbitration page shows it three times more above).
EDITOR_IMAGE = "#label-studio img[src*='/media/items/']"


@pytest.fixture()
def served(tmp_path) -> Iterator[tuple[World, str]]:
    if os.environ.get("QWEN_SKIP_BROWSER") == "1":
        pytest.skip("QWEN_SKIP_BROWSER=1")
    missing = [str(path) for path in (CHROMIUM, EDITOR_BUILD / "js" / "main.js") if not path.exists()]
    assert not missing, (
        f"missing {missing}: apt-get install -y chromium; npm ci --ignore-scripts (or set QWEN_SKIP_BROWSER=1)"
    )
    world = build_world(
        sqlite_url(tmp_path / "annotations.db"), tmp_path / "root", secure_cookies=False, editor_dir=EDITOR_BUILD
    )
    try:
        with running_server(world.app) as base:
            yield world, base
    finally:
        for client in world.clients:
            client.close()
        world.engine.dispose()


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(browser, base: str, username: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # The Content-Security-Policy must not block anything the pages need.
    page.on("console", lambda message: "Content Security Policy" in message.text and errors.append(message.text))
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_function("() => document.location.pathname !== '/login'")
    return page, errors


def wait_for_editor(page) -> None:
    page.wait_for_function(
        "() => window.workbenchStore && window.workbenchStore.annotationStore.selected "
        "&& window.workbenchStore.annotationStore.selected.results.length > 0"
    )
    page.locator(EDITOR_IMAGE).first.wait_for(state="visible")


def drag_box(page, box: list[float], dx: float, dy: float) -> None:
    """Drag the region drawn at pixel ``box`` of the frame by (dx, dy) frame pixels, like a user."""
    image = page.locator(EDITOR_IMAGE).first
    page.wait_for_function(
        f'() => {{ const i = document.querySelector("{EDITOR_IMAGE}"); return i && i.complete && i.naturalWidth > 0; }}'
    )
    image.scroll_into_view_if_needed()  # an arbitration page shows the versions side by side above it
    shown = image.bounding_box()
    scale = shown["width"] / WIDTH
    x = shown["x"] + (box[0] + box[2]) / 2 * scale
    y = shown["y"] + (box[1] + box[3]) / 2 * scale
    page.mouse.click(x, y)  # select the region
    # The editor redraws a selected region (with its handles): a press before that redraw lands on
    # the shape being replaced, and on a busy machine the drag's first moves were lost.
    page.wait_for_function("() => Boolean(window.workbenchStore.annotationStore.selected.highlightedNode)")
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    # Selecting may scroll the page (the editor brings the region's fields into view): aim again.
    shown = image.bounding_box()
    x = shown["x"] + (box[0] + box[2]) / 2 * scale
    y = shown["y"] + (box[1] + box[3]) / 2 * scale
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x + dx * scale * step / 10, y + dy * scale * step / 10)
    page.mouse.up()


def test_annotator_edits_and_reviewer_arbitrates(served, browser):
    world, base = served
    world.set_double_rate(0.0)
    world.import_batch("b-browser", frames=1)
    annotator = next(name for name in ("ann1", "ann2", "ann3") if my_items(world, name))
    entry = my_items(world, annotator)[0]

    page, errors = sign_in(browser, base, annotator)
    assert page.url == base + "/annotate"
    page.click(f"a[href='/annotate/{entry['annotation_id']}']")
    wait_for_editor(page)
    drag_box(page, AI_BOX, dx=40, dy=20)
    transcription = page.locator("textarea.lsf-textarea-tag__input").first
    assert transcription.input_value() == "hello"
    transcription.click()
    transcription.fill("hullo world")
    transcription.press("Tab")
    # Every change is saved as a draft at once, before any submit.
    page.wait_for_function("() => document.getElementById('save-status').textContent.startsWith('Saved')")
    draft = world.client(annotator).get(f"/api/annotations/{entry['annotation_id']}").json()
    assert draft["state"] == "draft" and draft["version"] > entry["version"]
    page.click("#submit-annotation")
    page.wait_for_url(base + "/annotate")
    assert not errors, errors
    final = final_annotations(world.engine, "b-browser")
    assert len(final) == 1
    region = json.loads(final["payload"].iloc[0])["regions"][0]
    assert region["bbox"] == pytest.approx([AI_BOX[0] + 40, AI_BOX[1] + 20, AI_BOX[2] + 40, AI_BOX[3] + 20], abs=2.0)
    assert region["text"] == "hullo world"
    page.close()

    # A disagreement: two annotators drew the line at different places.
    world.set_double_rate(1.0)
    world.import_batch("b-dispute", frames=1)
    (first, entry_a), (second, entry_b) = [
        (name, my_items(world, name)[-1])
        for name in ("ann1", "ann2", "ann3")
        if any(e["batch"] == "b-dispute" for e in my_items(world, name))
    ]
    _submit(world, first, entry_a, [40, 40, 160, 80], "hello")
    _submit(world, second, entry_b, [200, 100, 320, 150], "hello")
    item = item_of(world, entry_a["annotation_id"])
    assert item.status == ItemStatus.ARBITRATION

    page, errors = sign_in(browser, base, "rita")
    assert page.url == base + "/review"
    page.click(f"a[href='/review/items/{item.item_id}']")
    wait_for_editor(page)
    assert first in page.inner_text("#version-legend") and second in page.inner_text("#version-legend")
    first_x = "window.workbenchStore.annotationStore.selected.serializeAnnotation().find(r => r.value.x !== undefined).value.x"
    shown_x = page.evaluate(first_x) / 100 * WIDTH
    shown_box = min(([40, 40, 160, 80], [200, 100, 320, 150]), key=lambda box: abs(box[0] - shown_x))
    drag_box(page, shown_box, dx=10, dy=10)
    page.wait_for_function(f"() => Math.abs({first_x} / 100 * {WIDTH} - {shown_box[0] + 10}) < 2")
    page.click("#save-merged")
    page.click("#confirm-ok")  # settling an arbitration asks first
    page.wait_for_url(base + "/review")
    assert not errors, errors
    final = final_annotations(world.engine, "b-dispute")
    assert final["source"].tolist() == ["arbitrated"] and final["author"].tolist() == ["rita"]
    merged = json.loads(final["payload"].iloc[0])["regions"][0]["bbox"]
    expected = [shown_box[0] + 10, shown_box[1] + 10, shown_box[2] + 10, shown_box[3] + 10]
    assert merged == pytest.approx(expected, abs=2.0)
    assert HEIGHT == 200  # the frame size the pixel checks above assume


# --------------------------------------------------------------------------- video events on the timeline

TIMELINE_READY = "() => window.workbenchTimeline && window.workbenchTimeline.ready"
EVENTS_NOW = "() => window.workbenchTimeline.result()"


def press(page, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


def wait_for_playhead(page, seconds: float) -> None:
    """Seeking a video completes asynchronously: wait until the playhead is at ``seconds`` (one frame)."""
    page.wait_for_function(f"() => Math.abs(window.workbenchTimeline.now() - {seconds}) < 0.045")


def test_video_events_are_played_marked_saved_and_reloaded(served, browser):
    world, base = served
    world.set_double_rate(0.0)
    world.import_video_batch("b-timeline")
    owner, entry = next(
        (name, e) for name in ("ann1", "ann2", "ann3") for e in my_items(world, name) if e["task"] == "video_event"
    )
    page, errors = sign_in(browser, base, owner)
    page.goto(f"{base}/annotate/{entry['annotation_id']}")
    page.wait_for_function(TIMELINE_READY)
    # The AI's two events, aligned to the shot cuts, and the cuts as marks on the timeline.
    assert [e["description"] for e in page.evaluate(EVENTS_NOW)] == [e["description"] for e in AI_EVENTS]
    marks = page.evaluate("() => window.workbenchTimeline.regions.getRegions().map((r) => r.id)")
    assert {"cut-0", "cut-1"} <= set(marks)
    # The cuts: the first frames of scenes 2 and 3 (frames 33 and 67 at 25 fps).
    first_cut, second_cut = page.evaluate("() => window.workbenchTimeline.cuts")
    assert (first_cut, second_cut) == (pytest.approx(1.32), pytest.approx(2.68))
    # Play: the video really plays in the page.
    page.locator("#timeline-wave").hover()
    press(page, "Space")
    page.wait_for_function("() => document.getElementById('timeline-video').currentTime > 0.3")
    press(page, "Space")
    assert page.evaluate("() => document.getElementById('timeline-video').paused")
    # Mark. The first event's start goes to the playhead at 0.1 s, snapping to the video's start.
    page.locator("#event-list tbody tr").first.locator("td").first.click()  # selects it, seeks to its start
    wait_for_playhead(page, 0.1)
    press(page, "i")
    # The second event (from the first cut) is split one second in; the part after it goes.
    press(page, "]")
    wait_for_playhead(page, first_cut)
    press(page, "Shift+ArrowRight")
    wait_for_playhead(page, first_cut + 1)
    press(page, "s", "Delete")
    # A new event from the second cut to the end of the video: k jumps to the next cut.
    press(page, "k")
    wait_for_playhead(page, second_cut)
    press(page, "n", "k")
    wait_for_playhead(page, 4.0)
    press(page, "o")
    description = page.locator("#event-list tbody tr").nth(2).locator("input")
    description.fill("a blue scene")
    page.wait_for_function(
        "() => document.getElementById('save-status').textContent.startsWith('Saved') && !window.workbenchSaver.pending()"
    )
    expected = [
        {"start": 0.0, "end": first_cut, "description": AI_EVENTS[0]["description"]},
        {"start": first_cut, "end": first_cut + 1, "description": AI_EVENTS[1]["description"]},
        {"start": second_cut, "end": 4.0, "description": "a blue scene"},
    ]
    assert page.evaluate(EVENTS_NOW) == pytest_approx_events(expected)
    # Reload: the same events come back from the server.
    page.reload()
    page.wait_for_function(TIMELINE_READY)
    assert page.evaluate(EVENTS_NOW) == pytest_approx_events(expected)
    stored = world.client(owner).get(f"/api/annotations/{entry['annotation_id']}").json()
    assert [(e["start"], e["end"], e["description"]) for e in stored["payload"]["events"]] == [
        (pytest.approx(e["start"], abs=0.002), pytest.approx(e["end"], abs=0.002), e["description"]) for e in expected
    ]
    page.click("#submit-annotation")
    page.wait_for_url(base + "/annotate")
    assert not errors, errors
    final = final_annotations(world.engine, "b-timeline")
    assert [e["description"] for e in json.loads(final["payload"].iloc[0])["events"]][-1] == "a blue scene"


def pytest_approx_events(events: list[dict]) -> list[dict]:
    return [
        {**e, "start": pytest.approx(e["start"], abs=0.002), "end": pytest.approx(e["end"], abs=0.002)} for e in events
    ]


# --------------------------------------------------------------------------- the other correction steps

SAVED = (
    "() => document.getElementById('save-status').textContent.startsWith('Saved') && !window.workbenchSaver.pending()"
)


def _open_item(world: World, base: str, browser, batch: str, task: str, payload: dict):
    world.set_double_rate(0.0)
    write_batch(world.layout, batch, frames=1, task=task, payload=payload)
    assert world.client("admin").post(f"/api/batches/{batch}/import").status_code == 200
    owner, entry = next((name, e) for name in ("ann1", "ann2", "ann3") for e in my_items(world, name))
    page, errors = sign_in(browser, base, owner)
    page.goto(f"{base}/annotate/{entry['annotation_id']}")
    wait_for_editor(page)
    return page, errors, world.client(owner), entry


def test_ocr_lines_are_merged_and_split(served, browser):
    world, base = served
    regions = [
        {"bbox": [40, 40, 120, 60], "text": "Hello", "language": "en", "reading_order": 0},
        {"bbox": [128, 42, 200, 62], "text": "world", "language": "en", "reading_order": 1},
        {"bbox": [40, 100, 280, 120], "text": "one line two", "language": "en", "reading_order": 2},
    ]
    page, errors, client, entry = _open_item(world, base, browser, "b-lines", "ocr", {"regions": regions})
    lines = page.locator("#ocr-lines li")
    lines.first.wait_for()
    assert lines.count() == 3
    lines.nth(0).locator(".ocr-line-pick").check()
    lines.nth(1).locator(".ocr-line-pick").check()
    page.click("#ocr-merge")
    page.wait_for_function("() => document.querySelectorAll('#ocr-lines li').length === 2")
    page.wait_for_function(SAVED)
    # Split the last line before "two": put the cursor there, then split.
    text = lines.nth(1).locator(".ocr-line-text")
    assert text.input_value() == "one line two"
    text.evaluate("(input) => { input.focus(); input.setSelectionRange(9, 9); }")
    lines.nth(1).locator(".ocr-line-split").click()
    page.wait_for_function("() => document.querySelectorAll('#ocr-lines li').length === 3")
    page.wait_for_function(SAVED)
    page.reload()
    wait_for_editor(page)
    page.locator("#ocr-lines li").nth(2).wait_for()
    stored = client.get(f"/api/annotations/{entry['annotation_id']}").json()["payload"]["regions"]
    assert [region["text"] for region in stored] == ["Hello world", "one line", "two"]
    assert stored[0]["bbox"] == pytest.approx([40, 40, 200, 62], abs=0.01)  # the union of both boxes
    cut = 40 + 240 * 9 / 12
    assert stored[1]["bbox"] == pytest.approx([40, 100, cut, 120], abs=0.01)
    assert stored[2]["bbox"] == pytest.approx([cut, 100, 280, 120], abs=0.01)
    shown = page.evaluate("() => window.workbenchStore.annotationStore.selected.regionStore.regions.length")
    assert shown == 3  # the editor draws the three boxes after the reload
    assert not errors, errors


def test_a_relation_arrow_between_objects_gets_its_predicate(served, browser):
    world, base = served
    objects = [
        {"bbox": [20, 20, 120, 120], "label": "cup", "occluded": False},
        {"bbox": [220, 40, 360, 160], "label": "laptop", "occluded": False},
    ]
    payload = {"objects": objects, "relations": [], "depth_order": []}
    page, errors, client, entry = _open_item(world, base, browser, "b-arrows", "spatial", payload)
    image = page.locator(EDITOR_IMAGE).first.bounding_box()
    scale = image["width"] / WIDTH
    annotation = "window.workbenchStore.annotationStore.selected"
    page.mouse.click(image["x"] + 70 * scale, image["y"] + 70 * scale)  # select the cup
    page.wait_for_function(f"() => Boolean({annotation}.highlightedNode)")
    page.keyboard.press("Alt+r")  # draw a relation from it...
    page.wait_for_function(f"() => {annotation}.relationMode === true")
    page.mouse.click(image["x"] + 290 * scale, image["y"] + 100 * scale)  # ...to the laptop
    relations = "() => window.workbenchStore.annotationStore.selected.relationStore.relations.length"
    page.wait_for_function(f"{relations} === 1")
    # An arrow without a predicate is not saved (and says why); choosing one saves it.
    page.wait_for_function("() => document.getElementById('save-status').textContent.includes('no predicate')")
    page.locator("[aria-label='more']").last.click()
    page.locator(".ant-select-selector").last.click()
    page.locator(".ant-select-item-option", has_text="left_of").click()
    page.keyboard.press("Escape")
    page.wait_for_function(SAVED)
    page.reload()
    wait_for_editor(page)
    page.wait_for_function(f"{relations} === 1")
    labels = page.evaluate(
        "() => window.workbenchStore.annotationStore.selected.serializeAnnotation()"
        ".filter((r) => r.type === 'relation').map((r) => [r.from_id, r.to_id, r.labels])"
    )
    assert labels == [["o0", "o1", ["left_of"]]]
    stored = client.get(f"/api/annotations/{entry['annotation_id']}").json()["payload"]
    assert stored["relations"] == [{"subject": 0, "predicate": "left_of", "object": 1}]
    assert [o["label"] for o in stored["objects"]] == ["cup", "laptop"]
    assert not [error for error in errors if "422" not in error], errors


def test_relations_are_suggested_from_the_boxes_and_saved(served, browser):
    world, base = served
    objects = [
        {"bbox": [20, 20, 120, 120], "label": "cup", "occluded": False},
        {"bbox": [220, 40, 360, 160], "label": "laptop", "occluded": False},
    ]
    payload = {"objects": objects, "relations": [], "depth_order": []}
    page, errors, client, entry = _open_item(world, base, browser, "b-suggest", "spatial", payload)
    page.locator("#spatial-suggest").wait_for()
    page.click("#spatial-suggest")
    relations = "() => window.workbenchStore.annotationStore.selected.relationStore.relations.length"
    page.wait_for_function(f"{relations} === 1")
    page.wait_for_function(SAVED)
    stored = client.get(f"/api/annotations/{entry['annotation_id']}").json()["payload"]
    assert stored["relations"] == [{"subject": 0, "predicate": "left_of", "object": 1}]
    assert stored["depth_order"] == [1, 0]  # the laptop stands lower in the picture: nearer
    assert [o["label"] for o in stored["objects"]] == ["cup", "laptop"]
    assert not errors, errors


def test_generated_html_is_edited_beside_its_rendering(served, browser):
    world, base = served
    payload = {
        "html": "<html><body><h1 style='color:red'>Hello</h1></body></html>",
        "layout": {"tag": "body", "role": "page", "bbox": [0, 0, 400, 200], "children": []},
    }
    page, errors, client, entry = _open_item(world, base, browser, "b-code", "image_to_code", payload)
    source = page.locator("#html-source")
    assert source.input_value() == payload["html"]
    rendering = page.frame_locator("#html-preview")
    assert rendering.locator("h1").inner_text() == "Hello"
    assert page.locator("#html-screenshot").get_attribute("src").startswith("/media/items/")
    changed = "<html><body><h1>Goodbye</h1><p id='more'>and thanks</p></body></html>"
    source.fill(changed)
    rendering.locator("#more").wait_for()
    assert rendering.locator("h1").inner_text() == "Goodbye"

    page.wait_for_function(SAVED)
    page.reload()
    wait_for_editor(page)
    assert page.locator("#html-source").input_value() == changed
    stored = client.get(f"/api/annotations/{entry['annotation_id']}").json()["payload"]
    assert stored["html"] == changed and stored["layout"]["tag"] == "body"
    assert not errors, errors


def test_a_reviewer_arbitrates_two_videos_on_the_timeline(served, browser):
    world, base = served
    world.set_double_rate(1.0)
    world.import_video_batch("b-video-review")
    pairs = [(n, e) for n in ("ann1", "ann2", "ann3") for e in my_items(world, n) if e["task"] == "video_event"]
    (first, entry_a), (second, entry_b) = pairs
    for name, entry, end in ((first, entry_a, 1.32), (second, entry_b, 0.5)):
        client = world.client(name)
        version = client.get(f"/api/annotations/{entry['annotation_id']}").json()["version"]
        events = [{"start": 0.0, "end": end, "description": f"red, says {name}"}]
        submitted = client.post(
            f"/api/annotations/{entry['annotation_id']}/submit", json={"version": version, "result": events}
        )
        assert submitted.status_code == 200
    item = item_of(world, entry_a["annotation_id"])
    assert item.status == ItemStatus.ARBITRATION
    page, errors = sign_in(browser, base, "rita")
    page.goto(f"{base}/review/items/{item.item_id}")
    page.wait_for_function(TIMELINE_READY)
    tabs = page.locator("#versions button")
    assert tabs.count() == 3 and tabs.nth(2).inner_text() == "AI"  # A, B and the AI's
    # Side by side: each version's events along the video, coloured by how they pair up.
    panels = page.locator("#compare-panels figure")
    panels.nth(2).wait_for()
    assert panels.nth(2).locator(".compare-title").inner_text() == "AI: Qwen/Qwen3-VL-8B-Instruct"
    for version in ("a", "b"):
        bar = page.locator(f"#compare-panels figure[data-version='{version}'] .compare-strip .event")
        assert bar.count() == 1 and bar.first.get_attribute("class") == "event differs"
    assert "temporal IoU 0.38 is below 0.70" in panels.nth(0).locator("li").first.inner_text()
    assert page.locator("#compare-panels figure[data-version='ai'] .compare-strip .event").count() == 2
    shown = [tabs.nth(i).inner_text() for i in range(2)]
    # Show B's version, lengthen its event to the first cut at the playhead, and save it as final.
    b_index = next(i for i, label in enumerate(shown) if label.startswith("B"))
    tabs.nth(b_index).click()
    b_author = shown[b_index].split(": ", 1)[1]
    assert page.evaluate(EVENTS_NOW)[0]["description"] == f"red, says {b_author}"
    page.locator("#event-list tbody tr").first.locator("td").first.click()
    press(page, "k")
    first_cut = page.evaluate("() => window.workbenchTimeline.cuts[0]")
    wait_for_playhead(page, first_cut)
    press(page, "o")
    page.click("#save-merged")
    page.click("#confirm-ok")  # settling an arbitration asks first
    page.wait_for_url(base + "/review")
    assert not errors, errors
    final = final_annotations(world.engine, "b-video-review")
    assert final["source"].tolist() == ["arbitrated"] and final["author"].tolist() == ["rita"]
    (event,) = json.loads(final["payload"].iloc[0])["events"]
    assert event["description"] == f"red, says {b_author}" and event["end"] == pytest.approx(first_cut, abs=0.002)


def test_a_seek_asked_for_during_another_seek_is_not_lost(served, browser):
    """Selecting an event seeks to its start; "k" pressed before that seek has finished must still
    jump to the next cut. (wavesurfer's own setTime parked the second seek while the video could
    not play, mid-seek, and dropped it when the first seek's "seeking" event came: on a busy
    machine the reviewer's "k" right after a click did nothing.) Both happen here in one task, so
    the second always arrives during the first."""
    world, base = served
    world.set_double_rate(0.0)
    world.import_video_batch("b-seeks")
    owner, entry = next(
        (name, e) for name in ("ann1", "ann2", "ann3") for e in my_items(world, name) if e["task"] == "video_event"
    )
    page, errors = sign_in(browser, base, owner)
    page.goto(f"{base}/annotate/{entry['annotation_id']}")
    page.wait_for_function(TIMELINE_READY)
    first_cut, second_cut = page.evaluate("() => window.workbenchTimeline.cuts")
    seek_then_key = (
        "(key) => { const t = window.workbenchTimeline; t.select(t.list.events[0].id, true); "
        "document.dispatchEvent(new KeyboardEvent('keydown', {key})); }"
    )
    for _ in range(3):
        page.evaluate(seek_then_key, "k")
        wait_for_playhead(page, first_cut)
        page.wait_for_function(
            f"() => Math.abs(document.getElementById('timeline-video').currentTime - {first_cut}) < 0.045"
        )
    page.evaluate("() => document.dispatchEvent(new KeyboardEvent('keydown', {key: 'k'}))")
    page.evaluate("() => document.dispatchEvent(new KeyboardEvent('keydown', {key: 'k'}))")
    wait_for_playhead(page, 4.0)  # two jumps in a row: the second cut, then the end of the video
    assert second_cut < 4.0
    assert not errors, errors


# --------------------------------------------------------------------------- no stray boxes

REGIONS_NOW = "() => window.workbenchStore.annotationStore.selected.regionStore.regions.length"
DEAD_NODE = "no longer part of a state tree"


def drag_on_frame(page, start: tuple[float, float], size: tuple[float, float]) -> None:
    """Press at ``start`` (frame pixels) and drag by ``size``, in steps, like a hand."""
    shown = page.locator(EDITOR_IMAGE).first.bounding_box()
    scale = shown["width"] / WIDTH
    x, y = shown["x"] + start[0] * scale, shown["y"] + start[1] * scale
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x + size[0] * scale * step / 10, y + size[1] * scale * step / 10)
    page.mouse.up()


def click_on_frame(page, point: tuple[float, float]) -> None:
    shown = page.locator(EDITOR_IMAGE).first.bounding_box()
    scale = shown["width"] / WIDTH
    page.mouse.click(shown["x"] + point[0] * scale, shown["y"] + point[1] * scale)


def test_a_drag_with_nothing_selected_draws_no_box(served, browser):
    world, base = served
    page, errors, client, entry = _open_item(world, base, browser, "b-stray", "ocr", ocr_payload())
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    # Select the AI's box, then click beside it: the editor picks the box's label when it is
    # selected and keeps it picked, and the next drag used to draw (and autosave) a box with it.
    click_on_frame(page, ((AI_BOX[0] + AI_BOX[2]) / 2, (AI_BOX[1] + AI_BOX[3]) / 2))
    page.wait_for_function("() => Boolean(window.workbenchStore.annotationStore.selected.highlightedNode)")
    click_on_frame(page, (390, 190))
    drag_on_frame(page, (250, 120), (60, 40))
    drag_on_frame(page, (200, 100), (-40, 30))  # and a plain drag on a fresh picture
    page.wait_for_timeout(1000)  # what a drawn box would need to be drawn and autosaved
    assert page.evaluate(REGIONS_NOW) == 1
    page.wait_for_function("() => !window.workbenchSaver.pending()")
    stored = client.get(f"/api/annotations/{entry['annotation_id']}").json()["payload"]["regions"]
    assert [region["bbox"] for region in stored] == [AI_BOX]
    assert not [text for text in console if DEAD_NODE in text], console[:3]
    # Drawing on purpose still works: pick the label, then drag.
    page.locator(".lsf-label", has_text="text").first.click()
    drag_on_frame(page, (250, 120), (60, 40))
    page.wait_for_function(f"{REGIONS_NOW} === 2")
    page.wait_for_function(SAVED)
    stored = client.get(f"/api/annotations/{entry['annotation_id']}").json()["payload"]["regions"]
    assert [region["bbox"] for region in stored][1] == pytest.approx([250, 120, 310, 160], abs=2.0)
    assert not errors, errors


# --------------------------------------------------------------------------- the queue, submit and next


def test_the_queue_shows_each_item_and_submit_and_next_goes_on(served, browser):
    from tests.test_workbench_queue import import_named

    world, base = served
    world.set_double_rate(0.0)
    import_named(world, "b-named", frames=5)
    owner = max(("ann1", "ann2", "ann3"), key=lambda name: len(my_items(world, name)))
    entries = my_items(world, owner)
    assert len(entries) >= 2
    page, errors = sign_in(browser, base, owner)
    rows = page.locator("#my-items tbody tr")
    assert rows.count() == len(entries)
    # Every row: a thumbnail that really loaded, the file's name, the task.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#my-items td.thumb img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    assert page.evaluate("() => document.querySelector('#my-items td.thumb img').naturalWidth") == 160
    assert [rows.nth(i).locator("td.name").inner_text() for i in range(rows.count())] == [e["name"] for e in entries]
    assert all(name.startswith("scan-") for name in (e["name"] for e in entries))
    assert rows.first.locator("td.task").inner_text() == "ocr"
    assert page.inner_text("#mine-done") == f"0 of {len(entries)}"
    # Start where the queue says, correct the text, submit and go on to the next draft.
    page.click("#start-next")
    page.wait_for_url(f"{base}/annotate/{entries[0]['annotation_id']}")
    wait_for_editor(page)
    transcription = page.locator("textarea.lsf-textarea-tag__input").first
    transcription.fill("first corrected")
    transcription.press("Tab")
    page.click("#submit-next")
    page.wait_for_url(f"{base}/annotate/{entries[1]['annotation_id']}")
    wait_for_editor(page)
    stored = world.client(owner).get(f"/api/annotations/{entries[0]['annotation_id']}").json()
    assert stored["state"] == "submitted" and stored["payload"]["regions"][0]["text"] == "first corrected"
    page.goto(base + "/annotate")
    assert page.inner_text("#mine-done") == f"1 of {len(entries)}"
    assert page.locator("#my-items tbody tr").first.get_attribute("data-state") == "submitted"
    assert page.locator("#batch-progress tr[data-batch='b-named'] td.items").inner_text() == "1 / 5"
    assert not errors, errors


def test_the_admin_picks_batches_instead_of_typing_them(served, browser):
    world, base = served
    world.set_double_rate(0.0)
    write_batch(world.layout, "b-ready-1", frames=2)
    write_batch(world.layout, "b-ready-2", frames=3)
    page, errors = sign_in(browser, base, "admin")
    assert page.url == base + "/admin"
    table = page.locator("#batch-table tbody tr")
    page.wait_for_function("() => document.querySelectorAll('#batch-table tbody tr[data-batch]').length === 2")
    assert [table.nth(i).get_attribute("data-batch") for i in range(2)] == ["b-ready-1", "b-ready-2"]
    assert page.locator("#batch-table tr[data-batch='b-ready-2'] td").nth(1).inner_text() == "not yet"
    picker = page.locator("#import-form select[name=batch] option")
    assert [picker.nth(i).inner_text() for i in range(picker.count())] == ["b-ready-1", "b-ready-2"]
    # Nothing imported yet: nothing to download from Label Studio either.
    assert page.locator("#ls-export-form select[name=batch] option").count() == 0
    # One click on the batch's row imports it.
    page.locator("#batch-table tr[data-batch='b-ready-2'] button").click()
    page.wait_for_function(
        "() => document.getElementById('flash').textContent.startsWith('Imported 3 item(s) of b-ready-2')"
    )
    imported_row = page.locator("#batch-table tr[data-batch='b-ready-2']")
    imported_row.locator("td", has_text="since").wait_for()
    assert imported_row.locator("td").nth(2).inner_text() == "3 open"
    assert imported_row.locator("button").inner_text() == "Import new items"
    assert page.locator("#ls-export-form select[name=batch]").input_value() == "b-ready-2"
    # The picker of the import form does the same for the other batch.
    page.locator("#import-form select[name=batch]").select_option("b-ready-1")
    page.locator("#import-form button[type=submit]").click()
    page.wait_for_function(
        "() => document.getElementById('flash').textContent.startsWith('Imported 2 item(s) of b-ready-1')"
    )
    assert sum(len(my_items(world, name)) for name in ("ann1", "ann2", "ann3")) == 5
    assert not errors, errors


# --------------------------------------------------------------------------- arbitration side by side


def _submit_results(world: World, name: str, annotation_id: str, edit) -> None:
    client = world.client(name)
    annotation = client.get(f"/api/annotations/{annotation_id}").json()
    response = client.post(
        f"/api/annotations/{annotation_id}/submit",
        json={"version": annotation["version"], "result": edit(annotation["result"])},
    )
    assert response.status_code == 200, response.text


def test_arbitration_shows_both_versions_and_the_ai_side_by_side(served, browser):
    from qwen_dataset.geometry import to_label_studio
    from tests.test_workbench_api import rows_of

    world, base = served
    regions = [
        {"bbox": AI_BOX, "text": "hello", "language": "en", "reading_order": 0},
        {"bbox": [220, 120, 340, 160], "text": "world", "language": "en", "reading_order": 1},
        {"bbox": [300, 20, 380, 40], "text": "extra", "language": "en", "reading_order": 2},
    ]
    world.set_double_rate(1.0)
    write_batch(world.layout, "b-side", frames=1, payload={"regions": regions})
    assert world.client("admin").post("/api/batches/b-side/import").status_code == 200
    rows = sorted((row for row in rows_of(world, _only_item(world)) if row.slot), key=lambda row: row.slot)
    a, b = rows

    def shift_first(result):  # A moved the first line down: IoU 0.6 with B's, below the 0.85 agreement
        for entry in result:
            if entry["id"] == "r0":
                entry["value"].update(to_label_studio([40, 50, 160, 90], WIDTH, HEIGHT))
        return result

    _submit_results(world, a.author, a.annotation_id, shift_first)
    _submit_results(world, b.author, b.annotation_id, lambda result: [r for r in result if r["id"] != "r2"])
    item = item_of(world, a.annotation_id)
    assert item.status == ItemStatus.ARBITRATION
    assert "no counterpart in B for box 3 of A ('extra' at 300,20-380,40)" in item.disagreement

    page, errors = sign_in(browser, base, "rita")
    # The queue row names the boxes that disagree, beside the item's thumbnail.
    row = page.locator(f"#arbitration-queue tr[data-item='{item.item_id}']")
    assert "no counterpart in B for box 3 of A ('extra' at 300,20-380,40)" in row.locator("td.note").inner_text()
    page.wait_for_function("() => document.querySelector('#arbitration-queue td.thumb img').naturalWidth === 160")
    row.locator("a.open").click()
    wait_for_editor(page)
    panels = page.locator("#compare-panels figure")
    panels.nth(2).wait_for()
    titles = [panels.nth(i).locator(".compare-title").inner_text() for i in range(3)]
    assert titles == [f"A: {a.author}", f"B: {b.author}", f"AI: {AI_AUTHOR}"]

    def statuses(version: str) -> dict[int, str]:
        boxes = page.locator(f"#compare-panels figure[data-version='{version}'] rect")
        return {
            int(boxes.nth(i).get_attribute("data-number")): boxes.nth(i).get_attribute("class")
            for i in range(boxes.count())
        }

    assert statuses("a") == {1: "box differs", 2: "box agrees", 3: "box alone"}
    assert statuses("b") == {1: "box differs", 2: "box agrees"}
    assert statuses("ai") == {1: "box ai", 2: "box ai", 3: "box ai"}
    listed = page.locator("#compare-panels figure[data-version='a'] li")
    assert listed.nth(0).inner_text() == "#1 'hello' at 40,50-160,90 vs B #1: IoU 0.60 is below 0.85"
    assert listed.nth(2).inner_text() == "#3 'extra' at 300,20-380,40: no counterpart in B"
    # The AI's version is named as the AI's in the editor's menu of versions, not "Admin".
    page.locator(".lsf-annotations-list__toggle").click()
    menu = page.locator(".lsf-annotations-list")
    menu.get_by_text(f"AI: {AI_AUTHOR}").first.wait_for()
    assert "Admin" not in menu.inner_text()
    page.keyboard.press("Escape")
    # Accepting asks first; cancelled, nothing happens.
    page.click("button[data-choice='b']")
    dialog = page.locator("#confirm-resolve")
    dialog.wait_for(state="visible")
    assert f"Make version B ({b.author}) the final version?" in dialog.inner_text()
    page.click("#confirm-cancel")
    dialog.wait_for(state="hidden")
    assert item_of(world, a.annotation_id).status == ItemStatus.ARBITRATION
    page.click("button[data-choice='b']")
    page.click("#confirm-ok")
    page.wait_for_url(base + "/review")
    final = final_annotations(world.engine, "b-side")
    assert final["source"].tolist() == ["arbitrated"]
    assert [r["text"] for r in json.loads(final["payload"].iloc[0])["regions"]] == ["hello", "world"]
    assert not errors, errors


def _only_item(world: World) -> str:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from qwen_dataset.db.models import WorkItem

    with Session(world.engine) as session:
        (item_id,) = session.scalars(select(WorkItem.item_id)).all()
    return item_id
