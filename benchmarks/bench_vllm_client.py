"""Throughput and client CPU of the vLLM prelabel backend against an ideal pipelined client.

Starts the loopback fake vLLM server (tests/vllm_fake_server.py) in a SEPARATE process with a
fixed per-request latency L (an asyncio sleep, so the server is never the bottleneck and its CPU
is not counted here), then runs ``VllmBackend.annotate`` with C requests in flight over N frames.

Baseline: a client that always keeps C requests in flight completes C / L requests per second.
Printed per scenario: achieved requests/second, the ideal C / L, their ratio (>= 0.9 is the target)
and the client's CPU seconds per request (``time.process_time`` of this process: the event loop,
httpx, JSON, and the image reading/encoding threads).

Scenarios:
* ``passthrough``: 1920x1080 PNG frames within max_pixels, sent byte for byte (base64 only);
* ``downscale``: 2560x1440 PNG frames over max_pixels, decoded, resized and re-encoded as PNG
  (the default, lossless) or JPEG q95 (``reencode_format="jpeg"``): bound by image CPU work.

    .venv/bin/python benchmarks/bench_vllm_client.py [--frames 640] [--concurrency 64] [--latency 0.5]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qwen_dataset.prelabel.base import FrameInput  # noqa: E402
from qwen_dataset.prelabel.templates import load_template  # noqa: E402
from qwen_dataset.prelabel.vllm_backend import VllmBackend, VllmSettings  # noqa: E402

DISTINCT_IMAGES = 8


def render_screen(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A GUI-like frame: panels, bars, text-like strokes and a photo-like panel, so the PNG is as
    big as a real screenshot's (~0.5 MB at 1080p)."""
    width, height = size
    image = Image.new("RGB", size, (248, 248, 250))
    photo_size = (width // 3, height // 3)
    noise = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 256, (photo_size[1] // 4, photo_size[0] // 4, 3), dtype=np.uint8)
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
        FrameInput(frame_id=f"f{index:06d}", upload_id=f"u{index:06d}", batch="bench", width=size[0], height=size[1], image_path=paths[index % len(paths)])
        for index in range(count)
    ]


class ServerProcess:
    """The fake server in a child process; it exits when we close its stdin."""

    def __init__(self, latency: float, reply_file: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "vllm_fake_server.py"), "--latency", str(latency), "--reply-file", str(reply_file)],
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


def run_scenario(
    base_url: str, frames: list[FrameInput], concurrency: int, latency: float, reencode_format: str, rounds: int
) -> dict[str, float]:
    """Best of ``rounds`` timed runs (a busy neighbour only ever slows a run down)."""
    settings = VllmSettings(base_url=base_url, max_concurrency=concurrency, tasks=("ocr",), reencode_format=reencode_format)
    backend = VllmBackend(settings)
    warmup = list(backend.annotate(frames[: min(concurrency, len(frames))], "ocr"))
    assert all(outcome.payload is not None for outcome in warmup), warmup[:1]
    best: dict[str, float] = {}
    for _ in range(rounds):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        outcomes = list(backend.annotate(frames, "ocr"))
        wall = time.perf_counter() - wall_start
        cpu = time.process_time() - cpu_start
        failed = sum(outcome.payload is None for outcome in outcomes)
        if len(outcomes) != len(frames) or failed:
            raise SystemExit(f"{len(outcomes)} outcomes for {len(frames)} frames, {failed} failed")
        throughput = len(frames) / wall
        if not best or throughput > best["throughput"]:
            ideal = concurrency / latency
            best = {"throughput": throughput, "ideal": ideal, "ratio": throughput / ideal, "cpu_ms": cpu / len(frames) * 1000, "wall": wall}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=640)
    parser.add_argument("--downscale-frames", type=int, default=128, help="frames for the CPU-bound downscale scenarios")
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
            print(f"C={args.concurrency} L={args.latency}s, best of {args.rounds} rounds, server in a separate process")
            print(f"{'scenario':<22} {'frames':>6} {'req/s':>8} {'C/L':>7} {'ratio':>6} {'client CPU ms/req':>18} {'wall s':>7}")
            for name, (frames, reencode_format) in scenarios.items():
                figures = run_scenario(server.base_url, frames, args.concurrency, args.latency, reencode_format, args.rounds)
                print(
                    f"{name:<22} {len(frames):>6} {figures['throughput']:>8.1f} {figures['ideal']:>7.1f} {figures['ratio']:>6.3f} "
                    f"{figures['cpu_ms']:>18.2f} {figures['wall']:>7.2f}"
                )
        finally:
            server.close()


if __name__ == "__main__":
    main()
