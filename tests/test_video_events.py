"""Video event boundaries: alignment, cut and audio-change detection, and the streaming PyAV scan."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from qwen_dataset.prelabel.base import FrameInput
from qwen_dataset.prelabel.video_events import (
    Boundaries,
    align_events,
    align_time,
    anchor_frames,
    cuts_from_sampled_frames,
    detect_peaks,
    energy_change_points,
    event_payload,
    frame_difference_scores,
    frame_ids_for_event,
    group_video_frames,
    scan_video,
    short_time_energy_db,
)

FPS = 25
CUTS_AT = (1.0, 2.2)  # seconds where the picture's colour changes
TONE = (1.5, 2.5)  # seconds of a 440 Hz tone in otherwise silent audio
RATE = 16000


def test_align_time_snaps_only_within_tolerance() -> None:
    anchors = [1.0, 2.2, 5.0]
    assert align_time(2.5, anchors, 0.5) == 2.2
    assert align_time(4.6, anchors, 0.5) == 5.0
    assert align_time(3.5, anchors, 0.5) == 3.5
    assert align_time(3.0, [], 0.5) == 3.0
    assert align_time(1.5, [1.0, 2.0], 0.75) == 1.0  # a tie goes to the earlier anchor


def test_align_events_keeps_raw_times() -> None:
    boundaries = Boundaries(cuts=(2.0,), audio_changes=(6.1,), source="video_scan")
    aligned = align_events(
        [{"start": 2.3, "end": 5.8, "description": "walks"}, {"start": 3.0, "end": 4.0, "description": "sits"}],
        boundaries,
        0.5,
    )
    assert aligned[0] == {"start": 2.0, "end": 6.1, "start_raw": 2.3, "end_raw": 5.8, "description": "walks"}
    assert aligned[1] == {"start": 3.0, "end": 4.0, "start_raw": 3.0, "end_raw": 4.0, "description": "sits"}


def test_alignment_never_turns_an_event_inside_out() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        anchors = tuple(rng.uniform(0, 10, size=rng.integers(0, 6)).round(2))
        start = round(float(rng.uniform(0, 10)), 2)
        end = start + round(float(rng.uniform(0, 1.5)), 2)
        tolerance = float(rng.uniform(0, 1))
        aligned = align_events([{"start": start, "end": end, "description": ""}], Boundaries(cuts=anchors), tolerance)[
            0
        ]
        assert aligned["start"] <= aligned["end"], (anchors, start, end, tolerance)
        assert abs(aligned["start"] - start) <= tolerance and abs(aligned["end"] - end) <= tolerance


def test_frame_ids_for_event_and_payload() -> None:
    times, ids = [0.0, 1.0, 2.0, 3.0], ["a", "b", "c", "d"]
    assert frame_ids_for_event(0.9, 2.1, times, ids) == ["b", "c"]
    assert frame_ids_for_event(1.3, 1.4, times, ids) == ["b"]  # none inside: the one nearest the middle
    payload = event_payload(
        [{"start": 2.4, "end": 3.0, "description": "later"}, {"start": 0.2, "end": 1.1, "description": "first"}],
        Boundaries(cuts=(2.0,), source="sampled_frames"),
        times,
        ids,
        tolerance=0.5,
    )
    assert [event["description"] for event in payload["events"]] == ["first", "later"]
    later = payload["events"][1]
    assert (later["start"], later["start_raw"], later["frame_ids"]) == (2.0, 2.4, ["c", "d"])
    assert payload["alignment"] == {"source": "sampled_frames", "tolerance_s": 0.5, "cuts": [2.0], "audio_changes": []}


def test_detect_peaks_finds_spikes_over_noise() -> None:
    rng = np.random.default_rng(0)
    times = np.arange(200) / FPS
    scores = rng.uniform(0.0, 0.02, size=200)
    scores[[40, 41, 130]] = [0.5, 0.3, 0.4]  # a cut spread over two frames counts once
    assert detect_peaks(times, scores, floor=0.08, mad_k=6.0, min_separation_s=0.2) == [
        pytest.approx(1.6),
        pytest.approx(5.2),
    ]
    assert detect_peaks(times, rng.uniform(0.0, 0.02, size=200), floor=0.08, mad_k=6.0, min_separation_s=0.2) == []


def test_frame_difference_scores() -> None:
    red, green = np.full((4, 4, 3), (200, 0, 0), np.uint8), np.full((4, 4, 3), (0, 200, 0), np.uint8)
    scores = frame_difference_scores([red, red, green, green])
    assert scores[0] == scores[1] == scores[3] == 0.0
    assert scores[2] == pytest.approx(400 / 3 / 255)


def test_energy_change_points_on_a_synthetic_tone() -> None:
    samples = np.zeros(4 * RATE, dtype=np.float32)
    start, end = int(TONE[0] * RATE), int(TONE[1] * RATE)
    samples[start:end] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(end - start) / RATE)
    samples += np.random.default_rng(1).normal(0, 1e-4, samples.size).astype(np.float32)
    times, energy = short_time_energy_db(samples, RATE, 0.05)
    assert len(times) == 80 and energy.max() > -10 and energy.min() < -70
    assert energy_change_points(times, energy) == [pytest.approx(1.5), pytest.approx(2.5)]
    assert energy_change_points(times, np.full(80, -40.0)) == []


def write_clip(path: Path, *, with_audio: bool = True, seconds: float = 3.0) -> None:
    """A 64x48 H.264 clip whose colour changes at CUTS_AT, with a tone during TONE."""
    colours = [(220, 30, 30), (30, 200, 40), (40, 60, 220)]
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "g": "12", "threads": "1"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=RATE, layout="mono") if with_audio else None
        for index in range(round(seconds * FPS)):
            scene = sum(index / FPS >= cut for cut in CUTS_AT)
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), colours[scene], np.uint8), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is None:
            return
        total = int(seconds * RATE)
        samples = np.zeros(total, dtype=np.float32)
        start, end = int(TONE[0] * RATE), int(TONE[1] * RATE)
        samples[start:end] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(end - start) / RATE)
        for offset in range(0, total, 1024):
            chunk = samples[offset : offset + 1024]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, offset, Fraction(1, RATE)
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)


def test_scan_video_finds_cuts_and_audio_changes(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    write_clip(clip)
    boundaries = scan_video(clip)
    assert boundaries.source == "video_scan"
    assert boundaries.cuts == (pytest.approx(1.0, abs=1 / FPS), pytest.approx(2.2, abs=1 / FPS))
    assert len(boundaries.audio_changes) == 2
    assert boundaries.audio_changes[0] == pytest.approx(TONE[0], abs=0.1)
    assert boundaries.audio_changes[1] == pytest.approx(TONE[1], abs=0.1)
    assert boundaries.anchors == sorted(boundaries.cuts + boundaries.audio_changes)


def test_scan_video_without_audio(tmp_path: Path) -> None:
    clip = tmp_path / "silent.mp4"
    write_clip(clip, with_audio=False)
    boundaries = scan_video(clip)
    assert boundaries.audio_changes == () and len(boundaries.cuts) == 2


def test_scan_video_refuses_a_file_without_video(tmp_path: Path) -> None:
    not_video = tmp_path / "noise.mp4"
    not_video.write_bytes(b"\x00" * 1000)
    with pytest.raises((ValueError, OSError)):
        scan_video(not_video)


def sampled_frames(tmp_path: Path, upload_id: str, times: list[float], colour_at) -> list[FrameInput]:
    frames = []
    for index, t in enumerate(times):
        path = tmp_path / f"{upload_id}-{index}.png"
        Image.new("RGB", (320, 180), colour_at(t)).save(path)
        frames.append(FrameInput(f"{upload_id}-{index:06d}", upload_id, "b", 320, 180, path, t=t))
    return frames


def test_cuts_from_sampled_frames(tmp_path: Path) -> None:
    times = [index * 0.5 for index in range(10)]
    frames = sampled_frames(tmp_path, "v", times, lambda t: (200, 20, 20) if t < 2.5 else (20, 20, 200))
    assert cuts_from_sampled_frames([frame.image_path for frame in frames], times) == [2.5]


def test_grouping_and_anchor_frames(tmp_path: Path) -> None:
    first = sampled_frames(tmp_path, "v1", [1.0, 0.0, 0.5], lambda t: (0, 0, 0))
    second = sampled_frames(tmp_path, "v2", [0.0, 0.5], lambda t: (0, 0, 0))
    mixed = [first[0], second[1], first[1], second[0], first[2]]
    groups = group_video_frames(mixed)
    assert list(groups) == ["v1", "v2"]
    assert [frame.t for frame in groups["v1"]] == [0.0, 0.5, 1.0]
    assert [frame.frame_id for frame in anchor_frames(mixed)] == [first[1].frame_id, second[0].frame_id]
