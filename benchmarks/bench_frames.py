"""Video sampling speed against the ffmpeg CLI, and memory against video length.

1. Speed. Generates an H.264 MP4 (libx264, preset fast, streamed frame by frame; default 60 s of
   1080p at 30 fps) in a temp dir, then times on that same file, in this one run:

   * ours: ``qwen_dataset.ingest.frames.video_frames`` at 1 fps, JPEG (quality 95) blobs into a temp
     BlobStore (decode every frame, convert the kept ones to RGB, mean luma, encode, store);
   * baseline: ``ffmpeg -v error -i in.mp4 -vf fps=1 out_%04d.jpg``.

   Timed in alternating rounds (each into fresh output folders); the best time of each side
   counts. Prints both wall times, ours/ffmpeg (1.0 = as fast as ffmpeg; lower is faster) and the
   frame counts. ``--content sample`` (default) uses ``qwen_dataset.samples.video.make_h264_video``, a
   mostly static picture with a moving timestamp and progress bar, like a screen recording;
   ``--content panning`` pans a detailed texture over the whole picture, which makes every frame
   expensive to decode.

2. Memory. Samples a short and a long video (default 1 and 10 minutes of 1280x720 at 30 fps,
   x264 ``ultrafast`` so that generating them stays quick), each in a fresh subprocess, and reports
   each child's peak RSS (``VmHWM``; ``getrusage`` ``ru_maxrss`` where /proc is missing) next to a
   child that only imports the modules: the long video must not need more memory than the short one.

    .venv/bin/python benchmarks/bench_frames.py [--seconds 60] [--height 1080] [--rate 30]
        [--content sample|panning] [--rounds 2] [--long-minutes 10] [--long-height 720]
        [--skip-speed] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from qwen_dataset.ingest.frames import FrameOptions, video_frames
from qwen_dataset.records import MediaType, UploadRecord, UploadStatus
from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.paths import sha256_file


def width_for(height: int) -> int:
    width = round(height * 16 / 9)
    return width - width % 2


def make_panning_video(path: Path, seconds: float, fps: int, width: int, height: int, preset: str) -> None:
    """Stream an H.264 MP4 whose whole picture moves: a detailed texture panning diagonally."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2), dtype=np.uint8)
    texture = np.kron(coarse, np.ones((16, 16), np.uint8))  # blocky shapes
    texture = (texture // 2 + rng.integers(0, 64, texture.shape, dtype=np.uint8)).astype(np.uint8)  # fine grain
    canvas = np.tile(texture, (2, 2))
    buffer = np.full((height * 3 // 2, width), 128, np.uint8)
    time_base = Fraction(1, fps)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": preset, "threads": "2"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = time_base
        for index in range(round(seconds * fps)):
            x, y = (4 * index) % (canvas.shape[1] - width), (2 * index) % (canvas.shape[0] - height)
            buffer[:height] = canvas[y : y + height, x : x + width]
            frame = av.VideoFrame.from_ndarray(buffer, format="yuv420p")
            frame.pts, frame.time_base = index, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def make_video(path: Path, content: str, seconds: float, fps: int, height: int, preset: str) -> Path:
    started = time.perf_counter()
    if content == "sample":
        # Imported here: the memory children should not pay for the generator's fonts and models.
        from qwen_dataset.samples.video import make_h264_video

        make_h264_video(path, seconds, fps, width_for(height), height, preset=preset)
    else:
        make_panning_video(path, seconds, fps, width_for(height), height, preset)
    size_mb = path.stat().st_size / 1e6
    print(
        f"  generated {path.name}: {seconds:g} s {width_for(height)}x{height} @ {fps} fps, {content}, "
        f"x264 {preset}, {size_mb:.1f} MB in {time.perf_counter() - started:.1f} s"
    )
    return path


def upload_record(path: Path) -> UploadRecord:
    return UploadRecord(
        upload_id=sha256_file(path),
        batch="bench",
        original_name=path.name,
        media_type=MediaType.VIDEO.value,
        bytes=path.stat().st_size,
        status=UploadStatus.OK.value,
        reason="",
        blob_uri="",
    )


def run_ours(video: Path, store_root: Path) -> tuple[float, int]:
    """Wall time and frame count of our sampler at 1 fps writing JPEG blobs."""
    blobs = BlobStore(store_root)
    upload = upload_record(video)
    options = FrameOptions(video_fps=1.0, video_frame_format="jpeg")
    started = time.perf_counter()
    count = sum(1 for _ in video_frames(upload, video, blobs, options))
    return time.perf_counter() - started, count


def run_ffmpeg(video: Path, out_dir: Path) -> tuple[float, int] | None:
    """Wall time and frame count of the ffmpeg CLI doing the same job; None when ffmpeg is missing."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [ffmpeg, "-v", "error", "-i", str(video), "-vf", "fps=1", str(out_dir / "out_%04d.jpg")]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started, len(list(out_dir.glob("out_*.jpg")))


def speed(args: argparse.Namespace, work: Path) -> None:
    """Alternating rounds (fresh output folders each time); the best time of each side counts."""
    print(
        f"[speed] {args.seconds:g} s video, {width_for(args.height)}x{args.height} @ {args.rate} fps, "
        f"{args.rounds} round(s)"
    )
    video = make_video(work / "in.mp4", args.content, args.seconds, args.rate, args.height, "fast")
    source_frames = round(args.seconds * args.rate)
    ours_runs, ffmpeg_runs = [], []
    for round_number in range(args.rounds):
        ours_runs.append(run_ours(video, work / f"store_{round_number}"))
        baseline = run_ffmpeg(video, work / f"ffmpeg_out_{round_number}")
        if baseline is not None:
            ffmpeg_runs.append(baseline)
        print(
            f"  round {round_number + 1}: ours {ours_runs[-1][0]:.2f} s"
            + (f", ffmpeg {baseline[0]:.2f} s" if baseline else "")
        )
    best, frames = min(ours_runs)
    print(
        f"  ours   (video_frames, 1 fps, JPEG q95 blobs): {best:7.2f} s, {frames} frames, "
        f"{source_frames / best:.0f} source frames/s"
    )
    if not ffmpeg_runs:
        print(
            "  ffmpeg CLI not found on PATH: no baseline (install it with `apt-get install -y ffmpeg`); "
            "only our own figures are reported"
        )
        return
    baseline_best, baseline_frames = min(ffmpeg_runs)
    print(
        f"  ffmpeg (-vf fps=1 out_%04d.jpg):              {baseline_best:7.2f} s, {baseline_frames} frames, "
        f"{source_frames / baseline_best:.0f} source frames/s"
    )
    print(f"  ratio ours/ffmpeg: {best / baseline_best:.2f}  (1.0 = as fast as ffmpeg; lower is faster)")


def child_peak_rss(video: Path | None, store_root: Path) -> dict[str, float]:
    """Run one sampling job in a fresh interpreter and return its figures (peak RSS in MiB)."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(video or ""),
        "--child-store",
        str(store_root),
    ]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    """This process's peak RSS.

    Linux keeps ``ru_maxrss`` across execve, so a child started from a big parent would report
    the parent's size; ``VmHWM`` belongs to the new address space, so it is read first.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_main(video: str, store_root: str) -> None:
    frames, seconds = (0, 0.0)
    if video:
        seconds, frames = run_ours(Path(video), Path(store_root))
    peak_mib = peak_rss_mib()
    print(json.dumps({"frames": frames, "seconds": seconds, "peak_rss_mib": peak_mib}))


def memory(args: argparse.Namespace, work: Path) -> None:
    height = args.long_height
    print(f"[memory] 1-minute and {args.long_minutes:g}-minute videos, {width_for(height)}x{height} @ {args.rate} fps")
    short = make_video(work / "short.mp4", "sample", 60, args.rate, height, "ultrafast")
    long = make_video(work / "long.mp4", "sample", args.long_minutes * 60, args.rate, height, "ultrafast")
    baseline = child_peak_rss(None, work / "store_idle")
    print(f"  imports only:            peak RSS {baseline['peak_rss_mib']:7.1f} MiB")
    figures = {}
    for label, video in (("1 minute", short), (f"{args.long_minutes:g} minutes", long)):
        figures[label] = child_peak_rss(video, work / f"store_{video.stem}")
        row = figures[label]
        print(
            f"  {label:<24} peak RSS {row['peak_rss_mib']:7.1f} MiB, {row['frames']} frames in {row['seconds']:.1f} s"
        )
    short_peak, long_peak = (row["peak_rss_mib"] for row in figures.values())
    print(f"  long/short peak RSS: {long_peak / short_peak:.3f}  (1.0 = memory does not grow with length)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the speed-test video")
    parser.add_argument("--height", type=int, default=1080, help="height of the speed-test video (16:9)")
    parser.add_argument("--rate", type=int, default=30, help="frame rate of the generated videos")
    parser.add_argument("--content", choices=("sample", "panning"), default="sample")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timing rounds; best of each counts")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="length of the long memory-test video")
    parser.add_argument("--long-height", type=int, default=720, help="height of the memory-test videos")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child_main(args.child, args.child_store)
        return
    with tempfile.TemporaryDirectory(prefix="bench_frames_") as tmp:
        work = Path(tmp)
        if not args.skip_speed:
            speed(args, work)
        if not args.skip_memory:
            memory(args, work)


if __name__ == "__main__":
    main()
