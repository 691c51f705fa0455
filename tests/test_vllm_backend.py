"""The Qwen3-VL/vLLM prelabel backend, talking real HTTP to a loopback server that speaks vLLM's protocol."""

from __future__ import annotations

import base64
import json
import random
import re
import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from qwen_dataset.geometry import from_qwen_1000
from qwen_dataset.payloads import TASK_ORDER
from qwen_dataset.prelabel.base import FrameInput, PrelabelBackend, outcomes_to_records
from qwen_dataset.prelabel.templates import load_template
from qwen_dataset.prelabel.video_events import anchor_frames
from qwen_dataset.prelabel.vllm.backend import ServerCheckError, VllmBackend
from qwen_dataset.prelabel.vllm.client import full_jitter_delay, parse_retry_after
from qwen_dataset.prelabel.vllm.images import encode_image, fit_within_pixels
from qwen_dataset.prelabel.vllm.protocol import encode_request
from qwen_dataset.prelabel.vllm.settings import VllmSettings
from qwen_dataset.records import AnnotationStatus, load_payload
from tests.vllm_fake_server import FakeVllm, FakeVllmServer, Reply

OCR_EXAMPLE = load_template("ocr").example
RED, GREEN, BLUE, GREY, WHITE = (200, 30, 30), (30, 180, 60), (40, 60, 210), (128, 128, 128), (250, 250, 250)


def ocr_answer(box: list[int]) -> dict[str, Any]:
    return {
        "lines": [
            {"bbox_2d": box, "text_content": "Total", "language": "en", "font_style": "regular", "reading_order": 0}
        ]
    }


@pytest.fixture()
def fake() -> FakeVllm:
    return FakeVllm(default=Reply.json(OCR_EXAMPLE))


@pytest.fixture()
def server(fake: FakeVllm) -> Iterator[FakeVllmServer]:
    with FakeVllmServer(fake) as running:
        yield running


def backend_for(server: FakeVllmServer, **overrides: Any) -> VllmBackend:
    settings: dict[str, Any] = {
        "base_url": server.base_url,
        "backoff_base_s": 0.001,
        "backoff_max_s": 0.01,
        "max_retries": 2,
        "request_timeout_s": 5.0,
    }
    settings.update(overrides)
    return VllmBackend(VllmSettings(**settings), rng=random.Random(0))


def paint(
    tmp_path: Path,
    name: str,
    colour: tuple[int, int, int],
    size: tuple[int, int] = (64, 48),
    *,
    t: float | None = None,
    upload: str = "",
) -> FrameInput:
    """A uniform frame: the fake server picks its scripted reply by this colour."""
    path = tmp_path / f"{name}.png"
    Image.new("RGB", size, colour).save(path)
    return FrameInput(
        frame_id=name, upload_id=upload or f"u-{name}", batch="b1", width=size[0], height=size[1], image_path=path, t=t
    )


# -- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "budget"),
    [
        ((3840, 2160), 1_310_720),
        ((1000, 3000), 500_000),
        ((640, 480), 1_310_720),
        ((7, 5000), 1000),
        ((4000, 3000), 2_097_152),
    ],
)
def test_fit_within_pixels_keeps_aspect_and_never_upscales(size: tuple[int, int], budget: int) -> None:
    width, height = fit_within_pixels(*size, budget)
    assert width * height <= max(budget, 1) or (width, height) == size
    assert width <= size[0] and height <= size[1]
    if size[0] * size[1] <= budget:
        assert (width, height) == size
    else:
        assert abs(width / height - size[0] / size[1]) / (size[0] / size[1]) < 0.02 or min(width, height) < 20


def test_encode_image_sends_small_png_and_jpeg_byte_for_byte(tmp_path: Path) -> None:
    png, jpeg = tmp_path / "a.png", tmp_path / "a.jpg"
    Image.new("RGB", (40, 30), RED).save(png)
    Image.new("RGB", (40, 30), RED).save(jpeg, quality=90)
    for path, mime in ((png, "image/png"), (jpeg, "image/jpeg")):
        encoded = encode_image(path, 10_000)
        header, data = encoded.data_url.split(",", 1)
        assert header == f"data:{mime};base64" and base64.b64decode(data) == path.read_bytes()
        assert (encoded.width, encoded.height) == (40, 30)


def test_encode_image_downscales_and_reencodes(tmp_path: Path) -> None:
    big, webp = tmp_path / "big.png", tmp_path / "a.webp"
    Image.new("RGB", (3000, 1000), BLUE).save(big)
    Image.new("RGB", (40, 30), GREEN).save(webp)
    encoded = encode_image(big, 300_000)
    assert (encoded.width, encoded.height) == fit_within_pixels(3000, 1000, 300_000) == (948, 316)
    header, data = encoded.data_url.split(",", 1)
    decoded = Image.open(__import__("io").BytesIO(base64.b64decode(data)))
    assert header == "data:image/png;base64" and decoded.size == (948, 316)
    assert encode_image(webp, 10_000).data_url.startswith("data:image/png;base64,")
    assert encode_image(big, 300_000, "jpeg").data_url.startswith("data:image/jpeg;base64,")


def test_encode_request_splices_data_urls_into_valid_json(tmp_path: Path) -> None:
    images = [
        encode_image(paint(tmp_path, name, colour).image_path, 10_000) for name, colour in (("a", RED), ("b", BLUE))
    ]
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": '<0.0 seconds> "quoted" 中文'},
                    {"type": "image_url", "image_url": {"url": "@p0@"}},
                    {"type": "image_url", "image_url": {"url": "@p1@"}},
                ],
            }
        ]
    }
    decoded = json.loads(encode_request(body, ["@p0@", "@p1@"], images))
    parts = decoded["messages"][0]["content"]
    assert parts[0]["text"] == '<0.0 seconds> "quoted" 中文'
    assert [part["image_url"]["url"] for part in parts[1:]] == [image.data_url for image in images]


def test_an_unreadable_frame_fails_without_a_request(tmp_path: Path, fake: FakeVllm, server: FakeVllmServer) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    frame = FrameInput("f-broken", "u", "b1", 64, 48, broken)
    [outcome] = list(backend_for(server, tasks=("ocr",)).annotate([frame], "ocr"))
    assert outcome.payload is None and outcome.error.startswith("image_unreadable:")
    assert fake.seen == []


# -- the happy path and the protocol ---------------------------------------------------------


def test_downscaled_request_converts_exactly_to_pixels_of_the_original_frame(
    tmp_path: Path, fake: FakeVllm, server: FakeVllmServer
) -> None:
    frame = paint(tmp_path, "wide", RED, size=(3000, 1000))
    fake.script(RED, Reply.json(ocr_answer([100, 250, 600, 750])))
    [outcome] = list(backend_for(server, max_pixels=200_000).annotate([frame], "ocr"))
    [seen] = fake.seen
    sent_width, sent_height = seen.image_sizes[0]
    assert sent_width * sent_height <= 200_000 and sent_width < 3000
    assert outcome.payload is not None
    assert (
        outcome.payload["regions"][0]["bbox"]
        == [300.0, 250.0, 1800.0, 750.0]
        == from_qwen_1000([100, 250, 600, 750], 3000, 1000)
    )


def test_request_carries_prompt_schema_and_limits(tmp_path: Path, fake: FakeVllm, server: FakeVllmServer) -> None:
    frames = [paint(tmp_path, f"f{index}", GREY) for index in range(3)]
    outcomes = list(backend_for(server, max_tokens=1000).annotate(frames, "ocr"))
    assert sorted(outcome.frame_id for outcome in outcomes) == ["f0", "f1", "f2"]
    assert all(outcome.payload and outcome.task == "ocr" for outcome in outcomes)
    assert len(fake.seen) == 3
    for seen in fake.seen:
        assert seen.status == 200 and seen.schema_name == "ocr" and seen.max_tokens == 1000
        assert seen.image_sizes == ((64, 48),) and "Spot all the text" in seen.texts[-1]


def test_every_task_round_trips_its_example(tmp_path: Path, fake: FakeVllm, server: FakeVllmServer) -> None:
    backend = backend_for(server)
    assert tuple(backend.tasks) == TASK_ORDER
    for task in TASK_ORDER[:-1]:
        colour = (10 + TASK_ORDER.index(task), 20, 30)
        fake.script(colour, Reply.json(load_template(task).example, fenced=task == "spatial"))
        [outcome] = list(backend.annotate([paint(tmp_path, task, colour, size=(1280, 720))], task))
        assert outcome.payload is not None, outcome.error
    assert [seen.schema_name for seen in fake.seen] == list(TASK_ORDER[:-1])


def test_gui_instruction_from_run_options_reaches_the_prompt(
    tmp_path: Path, fake: FakeVllm, server: FakeVllmServer
) -> None:
    fake.script(WHITE, Reply.json(load_template("gui_action").example))
    backend = backend_for(server, tasks=("gui_action",))
    run = backend.with_run_options(instruction="Add the item to the cart")
    [outcome] = list(run.annotate([paint(tmp_path, "gui", WHITE)], "gui_action"))
    assert "Instruction: Add the item to the cart" in fake.seen[0].texts[-1]
    assert outcome.payload is not None and outcome.payload["requested_instruction"] == "Add the item to the cart"
    assert run.version != backend.version and backend.settings.gui_instruction != run.settings.gui_instruction


def test_fenced_json_is_accepted_in_one_request(tmp_path: Path, fake: FakeVllm, server: FakeVllmServer) -> None:
    fake.script(GREEN, Reply.json(ocr_answer([0, 0, 500, 500]), fenced=True))
    [outcome] = list(backend_for(server).annotate([paint(tmp_path, "fenced", GREEN)], "ocr"))
    assert outcome.payload is not None and len(fake.seen) == 1


# -- invalid answers: one retry, then a failure row ------------------------------------------


def test_malformed_json_is_retried_once_and_can_recover(tmp_path: Path, fake: FakeVllm, server: FakeVllmServer) -> None:
    fake.script(RED, Reply(content='{"lines": [{"bbox_2d": [1, 2'), Reply.json(ocr_answer([0, 0, 10, 10])))
    [outcome] = list(backend_for(server).annotate([paint(tmp_path, "flaky", RED)], "ocr"))
    assert outcome.payload is not None and len(fake.requests_for(RED)) == 2


def test_a_truncated_answer_is_asked_again_with_a_larger_budget_up_to_the_ceiling(
    tmp_path: Path, fake: FakeVllm, server: FakeVllmServer
) -> None:
    truncated = Reply(content='{"lines": [', finish_reason="length")
    fake.script(BLUE, truncated, truncated, truncated, truncated)
    frame = paint(tmp_path, "long", BLUE)
    [outcome] = list(backend_for(server).annotate([frame], "ocr"))
    assert outcome.error.startswith("truncated: the answer hit max_tokens=16384")
    assert [seen.max_tokens for seen in fake.requests_for(BLUE)] == [4096, 8192, 16384]  # never the same budget twice
    fake.script(RED, truncated, Reply.json(ocr_answer([0, 0, 5, 5])))
    [grown] = list(backend_for(server).annotate([paint(tmp_path, "grown", RED)], "ocr"))
    assert grown.payload is not None and [seen.max_tokens for seen in fake.requests_for(RED)] == [4096, 8192]


def test_a_truncated_answer_fails_at_once_without_a_retry_budget(
    tmp_path: Path, fake: FakeVllm, server: FakeVllmServer
) -> None:
    fake.script(BLUE, Reply(content='{"lines": [', finish_reason="length"))
    [outcome] = list(backend_for(server, retry_max_tokens=0).annotate([paint(tmp_path, "once", BLUE)], "ocr"))
    assert outcome.error.startswith("truncated: the answer hit max_tokens=4096") and len(fake.requests_for(BLUE)) == 1


def test_image_to_code_asks_for_its_templates_budget(tmp_path: Path, fake: FakeVllm, server: FakeVllmServer) -> None:
    list(backend_for(server).annotate([paint(tmp_path, "page", BLUE)], "image_to_code"))
    assert fake.requests_for(BLUE)[0].max_tokens == 8192  # the template's 8192, not a silent 4096
    list(backend_for(server, max_tokens=2048).annotate([paint(tmp_path, "capped", RED)], "image_to_code"))
    assert fake.requests_for(RED)[0].max_tokens == 2048  # a lower cap lowers it


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(content="I cannot see any text, sorry."), "invalid_json"),
        (Reply.json(ocr_answer([0, 0, 1400, 500])), "out_of_range"),
        (Reply.json(ocr_answer([600, 0, 500, 500])), "out_of_range"),
        (Reply.json({"lines": [{**ocr_answer([0, 0, 5, 5])["lines"][0], "font_style": "gothic"}]}), "unknown_label"),
        (Reply.json({"regions": []}), "schema_violation"),
    ],
)
def test_bad_answers_become_failure_rows_after_one_retry(
    tmp_path: Path, fake: FakeVllm, server: FakeVllmServer, reply: Reply, code: str
) -> None:
    fake.script(BLUE, reply, reply)
    frame = paint(tmp_path, "bad", BLUE)
    [outcome] = list(backend_for(server).annotate([frame], "ocr"))
    assert outcome.payload is None
    assert outcome.error.startswith(f"{code}: ") and len(outcome.error) > len(code) + 5
    assert outcome.raw == reply.content
    assert len(fake.requests_for(BLUE)) == 2
    [record] = outcomes_to_records([outcome], [frame], "ocr", "Qwen/Qwen3-VL-4B-Instruct", "v")
    assert record.status == AnnotationStatus.FAILED and record.error == outcome.error
    assert load_payload(record.payload) == {"raw": reply.content}


# -- transport errors: retries with backoff ---------------------------------------------------


class RecordingRandom(random.Random):
    def __init__(self) -> None:
        super().__init__(0)
        self.bounds: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.bounds.append(b)
        return super().uniform(a, b)


def test_500_and_429_are_retried_and_retry_after_is_honoured(
    tmp_path: Path, fake: FakeVllm, server: FakeVllmServer
) -> None:
    fake.script(RED, Reply.error(500), Reply.error(503), Reply.json(ocr_answer([0, 0, 10, 10])))
    fake.script(GREEN, Reply.error(429, retry_after="0"), Reply.json(ocr_answer([0, 0, 10, 10])))
    rng = RecordingRandom()
    settings = VllmSettings(base_url=server.base_url, backoff_base_s=0.002, backoff_max_s=0.003, max_retries=3)
    outcomes = list(
        VllmBackend(settings, rng=rng).annotate([paint(tmp_path, "r", RED), paint(tmp_path, "g", GREEN)], "ocr")
    )
    assert all(outcome.payload is not None for outcome in outcomes)
    assert [seen.status for seen in fake.requests_for(RED)] == [500, 503, 200]
    assert [seen.status for seen in fake.requests_for(GREEN)] == [429, 200]
    # Two jittered waits for RED (doubling, capped); the 429's Retry-After replaced the jitter.
    assert rng.bounds == [0.002, 0.003]


def test_persistent_5xx_gives_up_after_max_retries(tmp_path: Path, fake: FakeVllm, server: FakeVllmServer) -> None:
    fake.script(GREY, *[Reply.error(502)] * 10)
    [outcome] = list(backend_for(server, max_retries=3).annotate([paint(tmp_path, "down", GREY)], "ocr"))
    assert outcome.payload is None
    assert outcome.error.startswith("http_502: scripted HTTP 502") and "gave up after 4 attempts" in outcome.error
    assert '"code": 502' in outcome.raw.replace(":502", ": 502")
    assert len(fake.requests_for(GREY)) == 4


def test_client_errors_are_not_retried(tmp_path: Path, fake: FakeVllm, server: FakeVllmServer) -> None:
    [outcome] = list(
        backend_for(server, model="Qwen/Qwen3-VL-8B-Instruct").annotate([paint(tmp_path, "m", RED)], "ocr")
    )
    assert outcome.error == "http_404: The model `Qwen/Qwen3-VL-8B-Instruct` does not exist."
    assert len(fake.seen) == 1


def test_slow_answers_time_out_and_are_retried(tmp_path: Path, fake: FakeVllm, server: FakeVllmServer) -> None:
    fake.script(BLUE, Reply.json(OCR_EXAMPLE, delay_s=1.0), Reply.json(OCR_EXAMPLE, delay_s=1.0))
    [outcome] = list(
        backend_for(server, request_timeout_s=0.3, max_retries=1).annotate([paint(tmp_path, "slow", BLUE)], "ocr")
    )
    assert outcome.payload is None and outcome.error.startswith("timeout: no answer within 0.3 s")
    assert len(fake.requests_for(BLUE)) == 2


def test_slow_answer_then_fast_one_succeeds(tmp_path: Path, fake: FakeVllm, server: FakeVllmServer) -> None:
    fake.script(GREEN, Reply.json(OCR_EXAMPLE, delay_s=1.0), Reply.json(OCR_EXAMPLE))
    [outcome] = list(backend_for(server, request_timeout_s=0.3).annotate([paint(tmp_path, "slow", GREEN)], "ocr"))
    assert outcome.payload is not None and len(fake.requests_for(GREEN)) >= 2


def test_unreachable_server_is_a_connection_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = VllmSettings(
        base_url=f"http://127.0.0.1:{port}", backoff_base_s=0.001, backoff_max_s=0.002, max_retries=2
    )
    [outcome] = list(VllmBackend(settings).annotate([paint(tmp_path, "x", RED)], "ocr"))
    assert (
        outcome.payload is None
        and outcome.error.startswith("connection_error: ")
        and "gave up after 3 attempts" in outcome.error
    )
    with pytest.raises(ServerCheckError, match="cannot reach"):
        VllmBackend(settings).check_server(timeout_s=1)


def test_api_key_and_model_check(tmp_path: Path) -> None:
    fake = FakeVllm(default=Reply.json(OCR_EXAMPLE), api_key="s3cret")
    with FakeVllmServer(fake) as running:
        assert backend_for(running, api_key="s3cret").check_server() == ["Qwen/Qwen3-VL-4B-Instruct"]
        with pytest.raises(ServerCheckError, match="HTTP 401"):
            backend_for(running, api_key="wrong").check_server()
        with pytest.raises(ServerCheckError, match="not 'Qwen/Qwen3-VL-8B-Instruct'"):
            backend_for(running, api_key="s3cret", model="Qwen/Qwen3-VL-8B-Instruct").check_server()
        [outcome] = list(backend_for(running, api_key="wrong").annotate([paint(tmp_path, "k", RED)], "ocr"))
        assert outcome.error.startswith("http_401") and len(fake.seen) == 0
        [outcome] = list(
            backend_for(running, api_key="s3cret", base_url=running.base_url + "/v1/").annotate(
                [paint(tmp_path, "k", RED)], "ocr"
            )
        )
        assert outcome.payload is not None


def test_backoff_helpers() -> None:
    rng = random.Random(1)
    delays = [full_jitter_delay(attempt, 0.5, 4.0, rng) for attempt in range(8)]
    assert all(0 <= delay <= min(4.0, 0.5 * 2**attempt) for attempt, delay in enumerate(delays))
    assert parse_retry_after("2") == 2.0 and parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# -- batches: concurrency, streaming, reruns --------------------------------------------------


def test_concurrency_is_bounded_and_used(tmp_path: Path) -> None:
    fake = FakeVllm(default=Reply.json(OCR_EXAMPLE), latency_s=0.3)
    frames = [paint(tmp_path, f"c{index}", GREY) for index in range(12)]
    with FakeVllmServer(fake) as running:
        outcomes = list(backend_for(running, max_concurrency=4).annotate(frames, "ocr"))
    assert len(outcomes) == 12 and fake.max_in_flight == 4


def test_outcomes_stream_and_closing_early_stops_sending(tmp_path: Path) -> None:
    fake = FakeVllm(default=Reply.json(OCR_EXAMPLE), latency_s=0.05)
    frames = [paint(tmp_path, f"s{index}", GREY) for index in range(40)]
    with FakeVllmServer(fake) as running:
        stream = backend_for(running, max_concurrency=3).annotate(frames, "ocr")
        first = next(stream)
        stream.close()
        sent = len(fake.seen)
    assert first.payload is not None
    assert sent <= 6  # only the in-flight window was ever encoded and sent, not all 40


def test_a_rerun_of_the_failed_frames_sends_only_those(tmp_path: Path, fake: FakeVllm, server: FakeVllmServer) -> None:
    frames = [paint(tmp_path, f"p{index}", (index, 100, 100)) for index in range(6)]
    for colour in ((1, 100, 100), (4, 100, 100)):
        fake.script(colour, Reply(content="garbage"), Reply(content="garbage"))
    backend = backend_for(server)
    first = {outcome.frame_id: outcome for outcome in backend.annotate(frames, "ocr")}
    failed = [frame for frame in frames if first[frame.frame_id].payload is None]
    assert [frame.frame_id for frame in failed] == ["p1", "p4"]
    assert len(fake.seen) == 8  # 4 good frames + 2 failed frames asked twice
    second = list(backend.annotate(failed, "ocr"))
    assert len(fake.seen) == 10 and all(outcome.payload is not None for outcome in second)
    assert {seen.colour for seen in fake.seen[8:]} == {(1, 100, 100), (4, 100, 100)}


# -- video events ----------------------------------------------------------------------------


def video_frames(tmp_path: Path, upload: str, count: int, step: float, cut_at: float) -> list[FrameInput]:
    return [
        paint(
            tmp_path,
            f"{upload}-{index:03d}",
            RED if index * step < cut_at else BLUE,
            size=(160, 90),
            t=index * step,
            upload=upload,
        )
        for index in range(count)
    ]


def events_from_markers(body: dict[str, Any]) -> Reply:
    """A Qwen3-VL-like answer: one event spanning the timestamps the request showed, nudged off the cut."""
    texts = [part["text"] for part in body["messages"][-1]["content"] if part["type"] == "text"]
    times = [float(match) for text in texts for match in re.findall(r"^<([\d.]+) seconds>$", text)]
    start, end = min(times), max(times)
    return Reply.json(
        {"events": [{"start": start + 0.2 if start > 0 else 0.0, "end": end, "description": f"from {start} to {end}"}]}
    )


def test_video_event_windows_markers_alignment_and_one_outcome_per_video(tmp_path: Path) -> None:
    fake = FakeVllm(default=events_from_markers)
    first = video_frames(tmp_path, "vid1", count=10, step=0.5, cut_at=2.0)
    second = video_frames(tmp_path, "vid2", count=3, step=1.0, cut_at=99)
    shuffled = [*first[5:], *second, *first[:5]]
    with FakeVllmServer(fake) as running:
        outcomes = {
            outcome.frame_id: outcome
            for outcome in backend_for(running, max_images_per_request=4).annotate(shuffled, "video_event")
        }
    assert set(outcomes) == {"vid1-000", "vid2-000"} == {frame.frame_id for frame in anchor_frames(shuffled)}
    assert sorted(len(seen.image_sizes) for seen in fake.seen) == [2, 3, 4, 4]  # 10 frames -> 4+4+2; 3 frames -> 3
    window = next(seen for seen in fake.seen if len(seen.image_sizes) == 4 and seen.texts[0] == "<0.0 seconds>")
    assert list(window.texts[:4]) == ["<0.0 seconds>", "<0.5 seconds>", "<1.0 seconds>", "<1.5 seconds>"]
    assert all(seen.schema_name == "video_event" for seen in fake.seen)
    payload = outcomes["vid1-000"].payload
    assert payload is not None and outcomes["vid1-000"].task == "video_event"
    assert payload["alignment"]["source"] == "sampled_frames" and payload["alignment"]["cuts"] == [2.0]
    events = payload["events"]
    assert [(event["start_raw"], event["end_raw"]) for event in events] == [(0.0, 1.5), (2.2, 3.5), (4.2, 4.5)]
    # 1.5 and 2.2 lie within 0.5 s of the cut at 2.0 and snap to it; 3.5 and 4.2 have no anchor near.
    assert [(event["start"], event["end"]) for event in events] == [(0.0, 2.0), (2.0, 3.5), (4.2, 4.5)]
    assert events[1]["frame_ids"] == ["vid1-004", "vid1-005", "vid1-006", "vid1-007"]


def test_a_failed_window_fails_the_whole_video(tmp_path: Path) -> None:
    fake = FakeVllm(default=events_from_markers)
    frames = video_frames(tmp_path, "vid", count=6, step=1.0, cut_at=3.0)  # windows: RED x3, BLUE x3
    fake.script(BLUE, Reply(content="no"), Reply(content="still no"))
    with FakeVllmServer(fake) as running:
        [outcome] = list(backend_for(running, max_images_per_request=3).annotate(frames, "video_event"))
    assert outcome.frame_id == "vid-000" and outcome.payload is None
    assert outcome.error.startswith("window 2/2 (3.0-5.0 s): invalid_json:") and outcome.raw == "still no"


def test_video_event_answer_outside_the_window_is_rejected(tmp_path: Path) -> None:
    fake = FakeVllm(default=Reply.json({"events": [{"start": 30.0, "end": 40.0, "description": "x"}]}))
    with FakeVllmServer(fake) as running:
        [outcome] = list(backend_for(running).annotate(video_frames(tmp_path, "v", 3, 1.0, 99), "video_event"))
    assert outcome.error.startswith("out_of_range:") and len(fake.seen) == 2


def test_video_frames_without_timestamps_fail_without_requests(
    tmp_path: Path, fake: FakeVllm, server: FakeVllmServer
) -> None:
    frames = [paint(tmp_path, f"n{index}", RED, upload="v") for index in range(3)]
    [outcome] = list(backend_for(server).annotate(frames, "video_event"))
    assert outcome.frame_id == "n0" and outcome.error.startswith("no_timestamps:") and fake.seen == []


def test_video_event_aligns_to_the_video_file_when_given(tmp_path: Path) -> None:
    from tests.test_video_events import write_clip

    clip = tmp_path / "clip.mp4"
    write_clip(clip)  # cuts at 1.0 and 2.2 s, a tone from 1.5 to 2.5 s
    frames = video_frames(tmp_path, "vc", count=4, step=0.8, cut_at=99)
    fake = FakeVllm(default=Reply.json({"events": [{"start": 1.15, "end": 2.4, "description": "tone"}]}))
    with FakeVllmServer(fake) as running:
        backend = backend_for(running, tasks=("video_event",)).with_run_options(
            video_path_for=lambda upload: clip if upload == "vc" else None
        )
        [outcome] = list(backend.annotate(frames, "video_event"))
    assert outcome.payload is not None and outcome.payload["alignment"]["source"] == "video_scan"
    [event] = outcome.payload["events"]
    assert event["start"] == pytest.approx(1.0, abs=0.05) and event["end"] == pytest.approx(2.5, abs=0.1)
    assert (event["start_raw"], event["end_raw"]) == (1.15, 2.4)


# -- wiring ----------------------------------------------------------------------------------


def test_backend_satisfies_the_protocol_and_version_needs_no_network() -> None:
    backend = VllmBackend(VllmSettings(base_url="http://10.255.255.1:9"))
    assert isinstance(backend, PrelabelBackend)
    assert backend.author == "Qwen/Qwen3-VL-4B-Instruct"
    for task in TASK_ORDER:
        assert f"{task}={backend.template_version(task)}" in backend.version
    assert "max_pixels=2097152" in backend.version
    assert VllmBackend(VllmSettings(base_url="http://x:1", max_pixels=1000)).version != backend.version
    assert backend.applies_to("video_event") == ("video_frame",)
    with pytest.raises(ValueError, match="not configured for task"):
        VllmBackend(VllmSettings(base_url="http://x:1", tasks=("ocr",))).annotate([], "spatial")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"base_url": "gpu-host:8000"}, "QWEN_VLLM_BASE_URL"),
        ({"max_concurrency": 0}, "positive"),
        ({"reencode_format": "gif"}, "reencode_format"),
    ],
)
def test_bad_settings_are_explained(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VllmSettings(**{"base_url": "http://h:1", **overrides})


def test_dagster_resource_is_thin_and_versioned_offline() -> None:
    from resources.vlm import VllmPrelabelResource

    resource = VllmPrelabelResource(
        base_url="http://gpu-host:8000", templates=["ocr", "video_event"], max_pixels=500_000
    )
    backend = resource.backend()
    assert isinstance(backend, VllmBackend) and tuple(backend.tasks) == ("ocr", "video_event")
    assert backend.settings.max_pixels == 500_000 and backend.settings.api_key == "EMPTY"
    version = resource.backend_version()
    assert version == backend.version and "Qwen/Qwen3-VL-4B-Instruct" in version and "max_pixels=500000" in version
    assert "gui_action" not in version


# -- in-process mode -------------------------------------------------------------------------


def test_in_process_mode_imports_without_vllm_and_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed, even where it is
    from qwen_dataset.prelabel.vllm.inprocess import InProcessVllmBackend, VllmNotInstalledError, require_vllm

    backend = InProcessVllmBackend()
    assert backend.version.startswith("vllm-inprocess:Qwen/Qwen3-VL-4B-Instruct")
    with pytest.raises(VllmNotInstalledError, match=re.escape("pip install -e '.[gpu]'")):
        require_vllm()
    with pytest.raises(ImportError, match="gpu"):
        backend.llm()


def test_in_process_mode_batches_and_retries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """vllm.LLM is replaced by a scripted engine exposing the same chat() surface."""
    calls: list[tuple[int, Any]] = []

    class Completion:
        def __init__(self, text: str) -> None:
            self.text, self.finish_reason = text, "stop"

    class LLM:
        def __init__(self, model: str, **engine_args: Any) -> None:
            self.model, self.engine_args = model, engine_args

        def chat(self, conversations: list[list[dict[str, Any]]], sampling_params: Any, use_tqdm: bool) -> list[Any]:
            calls.append((len(conversations), sampling_params))
            replies = []
            for conversation in conversations:
                url = conversation[-1]["content"][0]["image_url"]["url"]
                image = Image.open(__import__("io").BytesIO(base64.b64decode(url.split(",", 1)[1])))
                good = image.getpixel((0, 0))[:3] != RED or len(calls) > 1
                replies.append(types.SimpleNamespace(outputs=[Completion(json.dumps(OCR_EXAMPLE) if good else "oops")]))
            return replies

    sampling = types.ModuleType("vllm.sampling_params")
    sampling.StructuredOutputsParams = lambda json: {"json": json}  # type: ignore[attr-defined]
    vllm = types.ModuleType("vllm")
    vllm.LLM = LLM  # type: ignore[attr-defined]
    vllm.SamplingParams = lambda **kwargs: kwargs  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    from qwen_dataset.prelabel.vllm.inprocess import InProcessVllmBackend
    from qwen_dataset.prelabel.vllm.settings import InProcessSettings

    frames = [paint(tmp_path, f"i{index}", RED if index == 1 else GREY) for index in range(5)]
    backend = InProcessVllmBackend(InProcessSettings(tasks=("ocr",), batch_size=3))
    outcomes = {outcome.frame_id: outcome for outcome in backend.annotate(frames, "ocr")}
    assert set(outcomes) == {frame.frame_id for frame in frames}
    assert all(outcome.payload is not None for outcome in outcomes.values())
    assert [size for size, _ in calls] == [3, 1, 2]  # batch of 3, the bad answer again, batch of 2
    params = calls[0][1]
    assert params["temperature"] == 0.0 and params["structured_outputs"] == {"json": load_template("ocr").schema}
    assert backend.llm().engine_args["limit_mm_per_prompt"] == {"image": 8, "video": 0}
