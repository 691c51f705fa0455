"""Throughput of the augmentation helpers against albumentations called directly.

Renders ~50 GUI screenshots of 1280x800 (the sample generator's login screen, each with ~12 text
lines and 8 UI elements as OCR and GUI labels), then times, in this one process and on the same
pictures, per pipeline:

* direct: ``A.Compose(<the pipeline's transforms>, bbox_params=pascal_voc)`` on the in-memory
  arrays with the OCR boxes, reseeded per picture — what a hand-written loop would do;
* ours (sample): :func:`qwen_dataset.augment.augment_sample` on the same arrays (payload walking,
  corner keypoints that catch cut boxes, action points, parameters to JSON, label write-back);
* direct + I/O: a loop of the direct call plus decoding the PNG from the blob store and storing
  the result as PNG, i.e. the same file work the batch helper does;
* ours (batch): one :func:`qwen_dataset.augment.augment_batch` call over the frames/annotations
  manifests (OCR and GUI labels per frame; writes the new rows too).

In memory, direct and ours are timed picture by picture, alternating, so a noisy neighbour hurts
both alike; the whole-batch runs alternate too, each into a fresh store, best of ``--rounds``.
Prints images/second and ours/direct (1.0 = no overhead; lower is slower). ``text_replace`` has
no albumentations equivalent; its own throughput is printed.

    .venv/bin/python benchmarks/bench_augment.py [--images 50] [--pipelines geometric color noise]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import warnings
from pathlib import Path

import albumentations as A  # noqa: E402  (after qwen_dataset.augment, which turns off its update check)
import numpy as np
import pandas as pd

from qwen_dataset.augment import augment_batch, augment_sample, builtin_registry, sample_seed
from qwen_dataset.augment.pipelines import BUILTINS
from qwen_dataset.ingest.frames import encode_picture, load_image_rgb
from qwen_dataset.records import AnnotationRecord, FrameRecord, annotation_id_for, dump_payload, frame_id_for, to_frame
from qwen_dataset.samples.drawing import LIGHT_THEMES
from qwen_dataset.samples.screens import screen_login
from qwen_dataset.store.blobs import BlobStore


def render_frames(count: int, store: BlobStore) -> tuple[list[np.ndarray], pd.DataFrame, pd.DataFrame]:
    pictures, frames, annotations = [], [], []
    for index in range(count):
        canvas = screen_login(random.Random(index), LIGHT_THEMES[index % len(LIGHT_THEMES)])
        rgb = np.asarray(canvas.image).copy()
        _, uri = store.put_bytes(encode_picture(rgb, "png"))
        upload = f"{index:016x}" * 4
        frame = FrameRecord(
            frame_id=frame_id_for(upload, 0),
            upload_id=upload,
            batch="bench",
            kind="image",
            index=0,
            page=None,
            t=None,
            width=rgb.shape[1],
            height=rgb.shape[0],
            blob_uri=uri,
            low_light=False,
            mean_luma=200.0,
            enhanced_uri="",
        )
        ocr = {
            "regions": [
                {
                    "bbox": line.bbox,
                    "text": line.text,
                    "confidence": 1.0,
                    "language": line.language,
                    "font_style": "regular",
                    "reading_order": i,
                }
                for i, line in enumerate(canvas.lines)
            ]
        }
        gui = {
            "elements": [{"bbox": e.bbox, "role": e.role, "text": e.text} for e in canvas.elements],
            "instruction": "Sign in",
            "requested_instruction": "Sign in",
            "actions": [
                {
                    "type": "click",
                    "target": i,
                    "point": [(e.bbox[0] + e.bbox[2]) / 2, (e.bbox[1] + e.bbox[3]) / 2],
                    "end_point": None,
                    "text": None,
                    "direction": None,
                }
                for i, e in enumerate(canvas.elements)
                if e.role == "button"
            ],
        }
        for task, payload in (("ocr", ocr), ("gui_action", gui)):
            annotations.append(
                AnnotationRecord(
                    annotation_id=annotation_id_for(frame.frame_id, task, "human", "bench"),
                    frame_id=frame.frame_id,
                    upload_id=upload,
                    batch="bench",
                    task=task,
                    source="human",
                    author="bench",
                    template_version="1.0",
                    created_at="2026-01-01T00:00:00+00:00",
                    status="ok",
                    error="",
                    payload=dump_payload(payload),
                    reviewed=True,
                )
            )
        pictures.append(rgb)
        frames.append(frame)
    return pictures, to_frame(frames, FrameRecord), to_frame(annotations, AnnotationRecord)


def direct_compose(pipeline: str) -> A.Compose:
    transforms = BUILTINS[pipeline]()
    transforms = transforms if isinstance(transforms, list) else [transforms]
    return A.Compose(transforms, bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]), seed=0)


def bench_pipeline(pipeline: str, pictures, frames, annotations, store: BlobStore, rounds: int) -> None:
    registry = builtin_registry()
    ocr_payloads = [p for t, p in zip(annotations["task"], annotations["payload"]) if t == "ocr"]
    seeds = [sample_seed(fid, pipeline, 0) for fid in frames["frame_id"]]
    direct = direct_compose(pipeline) if pipeline != "text_replace" else None
    boxes = [np.array([r["bbox"] for r in json.loads(p)["regions"]], dtype=float) for p in ocr_payloads]
    # Warm-up: first calls build caches (fonts, OpenCV kernels).
    augment_sample(pictures[0], ocr_payloads[0], "ocr", pipeline, seeds[0], registry=registry)
    t_direct = t_ours = 0.0
    same = 0
    for _ in range(rounds):
        for picture, payload, seed, box in zip(pictures, ocr_payloads, seeds, boxes):
            start = time.perf_counter()
            ours, _, _ = augment_sample(picture, payload, "ocr", pipeline, seed, registry=registry)
            t_ours += time.perf_counter() - start
            if direct is None:
                continue
            start = time.perf_counter()
            direct.set_random_seed(seed)
            out = direct(image=picture, bboxes=box, labels=np.arange(len(box)))
            t_direct += time.perf_counter() - start
            same += int(np.array_equal(out["image"], ours))
    # Whole batches, alternating, each run into a fresh store (a store skips blobs it already holds).
    t_direct_io = t_batch = float("inf")
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as scratch:
            batch_store = BlobStore(Path(scratch))
            for uri in frames["blob_uri"]:  # the source pictures, untimed
                batch_store.put_bytes(store.read_bytes(uri))
            start = time.perf_counter()
            result = augment_batch(frames, annotations, batch_store, [pipeline], seed=0, registry=registry)
            t_batch = min(t_batch, time.perf_counter() - start)
        if direct is None:
            continue
        with tempfile.TemporaryDirectory() as scratch:
            direct_store = BlobStore(Path(scratch))
            start = time.perf_counter()
            for seed, box, uri in zip(seeds, boxes, frames["blob_uri"]):
                decoded = load_image_rgb(store.local_path(uri))
                direct.set_random_seed(seed)
                out = direct(image=decoded, bboxes=box, labels=np.arange(len(box)))
                direct_store.put_bytes(encode_picture(out["image"], "png"))
            t_direct_io = min(t_direct_io, time.perf_counter() - start)
    produced, rejected = len(result.frames), len(result.rejected)
    n = len(pictures) * rounds
    print(
        f"\n[{pipeline}] {len(pictures)} pictures of {pictures[0].shape[1]}x{pictures[0].shape[0]}, {rounds} round(s)"
    )
    print(f"  ours (augment_sample, in memory) : {n / t_ours:7.1f} img/s")
    if direct is not None:
        print(
            f"  direct albumentations (in memory): {n / t_direct:7.1f} img/s   ours/direct = {t_direct / t_ours:.2f}"
            f"   identical pixels: {same}/{n}"
        )
        print(f"  direct + PNG decode/encode/store : {len(pictures) / t_direct_io:7.1f} img/s   (best of {rounds})")
    batch_line = f"  ours (augment_batch, blob store) : {produced / t_batch:7.1f} img/s"
    if direct is not None:
        batch_line += f"   batch/direct+I/O = {t_direct_io / t_batch:.2f}"
    print(batch_line + f"   ({produced} produced, {rejected} rejected; OCR + GUI labels per frame)")


def main() -> None:
    # The direct baseline gives colour-only pipelines bbox_params too; albumentations warns about it.
    warnings.filterwarnings("ignore", message="Got processor for")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pipelines", nargs="+", default=["geometric", "color", "noise", "text_replace"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        store = BlobStore(Path(root))
        start = time.perf_counter()
        pictures, frames, annotations = render_frames(args.images, store)
        print(
            f"rendered {len(pictures)} screenshots in {time.perf_counter() - start:.1f} s; "
            f"albumentations {A.__version__}"
        )
        for pipeline in args.pipelines:
            bench_pipeline(pipeline, pictures, frames, annotations, store, args.rounds)


if __name__ == "__main__":
    main()
