"""Throughput and client CPU of the vLLM prelabel backend, against two baselines in one command.

Starts the loopback fake vLLM server (tests/vllm_fake_server.py) in a SEPARATE process with a
fixed per-request latency L (an asyncio sleep, and it checks only each image's header, so the
server's CPU stays small and is not counted here), then runs ``VllmBackend.annotate`` with C
requests in flight over N frames.

Baselines:
* ideal: a client that always keeps C requests in flight completes C / L requests per second;
* raw: a bare httpx client on the same connection layout POSTing the backend's own request body
  for the same frame, prebuilt once - no file reading, encoding, validation or conversion. It shows
  what this machine and server allow (on a busy 2-core machine, noticeably less than C / L).

Printed per scenario: requests/second, ours / ideal (target >= 0.9), ours / raw, and the client's
CPU milliseconds per request (``time.process_time`` of this process: the event loop, httpx, JSON,
answer validation, and the image reading/encoding threads). Each figure is the best of
``--rounds`` runs: a busy neighbour only ever slows a run down.

Scenarios:
* ``passthrough``: 1920x1080 PNG frames (~0.6 MB) within max_pixels, sent byte for byte;
* ``downscale``: 2560x1440 PNG frames over max_pixels, decoded, resized and re-encoded as PNG
  (the default, lossless) or JPEG q95 (``reencode_format="jpeg"``): bound by image CPU work.

    .venv/bin/python benchmarks/bench_vllm_client.py [--frames 640] [--concurrency 64] [--latency 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qwen_dataset.prelabel.base import FrameInput  # noqa: E402
from qwen_dataset.prelabel.templates import load_template  # noqa: E402
from qwen_dataset.prelabel.vllm.backend import VllmBackend
from qwen_dataset.prelabel.vllm.client import CONNECTIONS_PER_POOL
from qwen_dataset.prelabel.vllm.images import encode_image
from qwen_dataset.prelabel.vllm.jobs import job_messages, plan_jobs
from qwen_dataset.prelabel.vllm.protocol import CHAT_PATH, build_request_body, encode_request, image_placeholder
from qwen_dataset.prelabel.vllm.settings import VllmSettings

DISTINCT_IMAGES = 8


def render_screen(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A GUI-like frame: panels, bars, text-like strokes and a photo-like panel, so the PNG is as
    big as a real screenshot's (~0.5 MB at 1080p)."""
    width, height = size
    image = Image.new("RGB", size, (248, 248, 250))
    photo_size = (width // 3, height // 3)
    noise = np.random.default_rng(rng.randrange(1 << 30)).integers(
        0, 256, (photo_size[1] // 4, photo_size[0] // 4, 3), dtype=np.uint8
    )
    image.paste(Image.fromarray(noise).resize(photo_size, Image.Resampling.BICUBIC), (width // 2, height // 2))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, height // 16), fill=(33, 37, 41))
    draw.rectangle((0, height // 16, width // 6, height), fill=(235, 238, 243))
    for _ in range(60):
        x = rng.randrange(width // 6 + 10, width - 200)
        y = rng.randrange(height // 16 + 10, height - 30)
        draw.text((x, y), "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(24)), fill=(20, 20, 30))
    for _ in range(12):
        x, y = rng.randrange(0, width - 120), rng.randrange(0, height - 40)
        draw.rounded_rectangle((x, y, x + 110, y + 32), radius=6, fill=(rng.randrange(256), 90, 200))
    return image


def make_frames(folder: Path, size: tuple[int, int], count: int) -> list[FrameInput]:
    rng = random.Random(7)
    paths = []
    for index in range(DISTINCT_IMAGES):
        path = folder / f"{size[0]}x{size[1]}-{index}.png"
        render_screen(size, rng).save(path)
        paths.append(path)
    return [
        FrameInput(
            frame_id=f"f{index:06d}",
            upload_id=f"u{index:06d}",
            batch="bench",
            width=size[0],
            height=size[1],
            image_path=paths[index % len(paths)],
        )
        for index in range(count)
    ]


class ServerProcess:
    """The fake server in a child process; it exits when we close its stdin."""

    def __init__(self, latency: float, reply_file: Path) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "vllm_fake_server.py"),
                "--latency",
                str(latency),
                "--reply-file",
                str(reply_file),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("LISTENING "):
            self.close()
            raise SystemExit(f"the fake server did not start (said {line!r})")
        self.base_url = f"http://127.0.0.1:{int(line.split()[1])}"

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def best_of(rounds: int, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(rounds):
        figures = run()
        if not best or figures["throughput"] > best["throughput"]:
            best = figures
    return best


def run_backend(backend: VllmBackend, frames: list[FrameInput]) -> dict[str, float]:
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    outcomes = list(backend.annotate(frames, "ocr"))
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    failed = sum(outcome.payload is None for outcome in outcomes)
    if len(outcomes) != len(frames) or failed:
        raise SystemExit(f"{len(outcomes)} outcomes for {len(frames)} frames, {failed} failed")
    return {"throughput": len(frames) / wall, "cpu_ms": cpu / len(frames) * 1000, "wall": wall}


def prebuilt_body(backend: VllmBackend, frame: FrameInput) -> bytes:
    """The exact bytes the backend sends for ``frame``."""
    settings, template = backend.settings, backend.template("ocr")
    [job] = plan_jobs([frame], "ocr", settings.max_images_per_request)
    image = encode_image(frame.image_path, settings.max_pixels, settings.reencode_format)
    placeholders = [image_placeholder(0)]
    messages = job_messages(job, template, placeholders, settings.gui_instruction)
    return encode_request(
        build_request_body(settings.model, template, messages, settings.max_tokens), placeholders, [image]
    )


def run_raw(base_url: str, body: bytes, concurrency: int, count: int) -> dict[str, float]:
    """C requests in flight from bare httpx clients (same pools of connections as the backend)."""

    async def main() -> float:
        pools = math.ceil(concurrency / CONNECTIONS_PER_POOL)
        size = math.ceil(concurrency / pools)
        clients = [
            httpx.AsyncClient(
                base_url=base_url, limits=httpx.Limits(max_connections=size, max_keepalive_connections=size)
            )
            for _ in range(pools)
        ]
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int) -> None:
            async with gate:
                response = await clients[index % pools].post(
                    CHAT_PATH, content=body, headers={"Content-Type": "application/json"}
                )
                response.raise_for_status()

        await asyncio.gather(*(one(index) for index in range(concurrency)))  # warm the connections
        started = time.perf_counter()
        await asyncio.gather(*(one(index) for index in range(count)))
        wall = time.perf_counter() - started
        for client in clients:
            await client.aclose()
        return wall

    cpu_start = time.process_time()
    wall = asyncio.run(main())
    return {"throughput": count / wall, "cpu_ms": (time.process_time() - cpu_start) / count * 1000, "wall": wall}


def run_scenario(
    base_url: str, frames: list[FrameInput], concurrency: int, reencode_format: str, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    settings = VllmSettings(
        base_url=base_url, max_concurrency=concurrency, tasks=("ocr",), reencode_format=reencode_format
    )
    backend = VllmBackend(settings)
    list(backend.annotate(frames[: min(concurrency, len(frames))], "ocr"))  # warm-up
    body = prebuilt_body(backend, frames[0])
    raw = best_of(rounds, lambda: run_raw(base_url, body, concurrency, len(frames)))
    ours = best_of(rounds, lambda: run_backend(backend, frames))
    return ours, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=640)
    parser.add_argument(
        "--downscale-frames", type=int, default=128, help="frames for the CPU-bound downscale scenarios"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-downscale", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        reply_file = folder / "reply.json"
        reply_file.write_text(json.dumps(load_template("ocr").example), encoding="utf-8")
        server = ServerProcess(args.latency, reply_file)
        try:
            scenarios = {"passthrough 1080p": (make_frames(folder, (1920, 1080), args.frames), "png")}
            if not args.skip_downscale:
                over = make_frames(folder, (2560, 1440), args.downscale_frames)
                scenarios["downscale 1440p->png"] = (over, "png")
                scenarios["downscale 1440p->jpeg"] = (over, "jpeg")
            ideal = args.concurrency / args.latency
            print(
                f"C={args.concurrency} L={args.latency}s ideal C/L={ideal:.0f} req/s, best of {args.rounds} rounds, server in a separate process"
            )
            print(
                f"{'scenario':<22} {'frames':>6} {'req/s':>7} {'ours/ideal':>10} {'raw req/s':>9} {'ours/raw':>8} {'client CPU ms/req':>17}"
            )
            for name, (frames, reencode_format) in scenarios.items():
                ours, raw = run_scenario(server.base_url, frames, args.concurrency, reencode_format, args.rounds)
                print(
                    f"{name:<22} {len(frames):>6} {ours['throughput']:>7.1f} {ours['throughput'] / ideal:>10.3f} "
                    f"{raw['throughput']:>9.1f} {ours['throughput'] / raw['throughput']:>8.3f} {ours['cpu_ms']:>17.2f}"
                )
        finally:
            server.close()


if __name__ == "__main__":
    main()
