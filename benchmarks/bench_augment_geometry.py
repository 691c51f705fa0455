"""Box error of every geometric pipeline, measured against the pixels.

The scenes and the measurement are the property test's (``tests/test_augment_geometry.py``):
random 320x240 pictures of solid rectangles, GUI buttons and text lines of known extent, each in
its own colour, go through each pipeline over ``--seeds`` seeds; each output label is compared
with the tight box of that object's own pixels. Prints, per pipeline:

* overhang: how far an object's pixels reach past its label (max, mean over all objects; a pixel
  whose centre is inside the label reaches ½ px past it, so ≤ 0.5 is exact);
* overhang inside: the same for the objects that did not touch the source picture's edge;
* deviation: the largest coordinate difference between the label and the tight box of the
  pixels, for the solid shapes (max, mean);
* draws rejected, and crops that shrank a box (a cut clipped instead of rejected).

    .venv/bin/python benchmarks/bench_augment_geometry.py [--seeds 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the scenes live with the property test in tests/

from qwen_dataset.augment import AugmentationRejected, Labels, augment_frame, builtin_registry  # noqa: E402
from tests.test_augment_geometry import fractional_box, geometric_pipelines, measure  # noqa: E402


def shrunk_crops(seeds: range) -> int:
    """Random crops of one fractional box whose output is smaller than the input: silent cuts."""
    augmentation = builtin_registry().create("crop")
    shrunk = 0
    for seed in seeds:
        box = fractional_box(seed)
        image = np.full((240, 320, 3), 128, np.uint8)
        labels = [Labels("spatial", {"objects": [{"bbox": box, "label": "x"}]})]
        try:
            out = augment_frame(image, labels, augmentation, seed).labels[0].payload["objects"][0]["bbox"]
        except AugmentationRejected:  # a rejected draw is no silent cut
            continue
        if out[2] - out[0] < box[2] - box[0] - 0.011 or out[3] - out[1] < box[3] - box[1] - 0.011:
            shrunk += 1
    return shrunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    registry = builtin_registry()
    rows = {}
    print(
        "| pipeline | overhang max | overhang mean | overhang inside max | deviation max | deviation mean | rejected |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in geometric_pipelines(registry):
        errors, rejected = measure(name, range(args.seeds), registry)
        solid = [e.deviation for e in errors if e.kind != "text"]
        overhang = [e.overhang for e in errors]
        rows[name] = {
            "objects": len(errors),
            "overhang_max": max(overhang),
            "overhang_mean": float(np.mean(overhang)),
            "overhang_inside_max": max(e.overhang for e in errors if not e.on_edge),
            "deviation_max": max(solid),
            "deviation_mean": float(np.mean(solid)),
            "rejected": rejected,
        }
        r = rows[name]
        print(
            f"| {name} | {r['overhang_max']:.2f} | {r['overhang_mean']:.3f} | {r['overhang_inside_max']:.2f} "
            f"| {r['deviation_max']:.2f} "
            f"| {r['deviation_mean']:.3f} | {rejected}/{args.seeds} |"
        )
    shrunk = shrunk_crops(range(200))
    rows["crop_shrunk_of_200"] = shrunk
    print(f"\ncrops that shrank a fractional box (cut, then clipped): {shrunk} of 200")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
