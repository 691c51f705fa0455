"""Shapes on a picture with OpenCV: closed rectangular outlines (controls, panels) and colour blobs.

Both detectors are classical image processing with fixed parameters (named here, and part of the
engines' version strings): no model, no training data, nothing downloaded.

* :func:`rectangles` finds closed outlines that fill most of their bounding box (buttons, text
  inputs, check boxes, panels): Canny edges, slightly thickened so a 1-pixel gap does not open an
  outline, then the contours whose convex hull covers at least ``RECTANGULARITY`` of their box.
* :func:`colour_blobs` finds regions of one colour that differ from the picture's background (the
  colour of its border): colours are quantised, and each quantised colour's connected components
  above a minimum area become one blob. Two touching objects of different colours stay two blobs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qwen_dataset.geometry import box_iou

#: Canny hysteresis thresholds on 8-bit grey levels.
CANNY_LOW, CANNY_HIGH = 30, 90
#: Share of its bounding box an outline's convex hull must cover to count as a rectangle.
RECTANGULARITY = 0.85
#: Two outlines boxing the same thing (the inner and outer edge of a border) above this IoU are one.
SAME_SHAPE_IOU = 0.8
#: Colour quantisation step (per channel) and the smallest blob kept, as a share of the picture.
COLOUR_STEP = 32
MIN_BLOB_SHARE = 0.002
#: Quantised colours within this many steps of the background colour count as background.
BACKGROUND_TOLERANCE = 1

RECTANGLES_VERSION = f"canny{CANNY_LOW}-{CANNY_HIGH},rect{RECTANGULARITY:g},same{SAME_SHAPE_IOU:g}"
BLOBS_VERSION = f"quant{COLOUR_STEP},min{MIN_BLOB_SHARE:g},bg{BACKGROUND_TOLERANCE}"


@dataclasses.dataclass(frozen=True)
class Blob:
    """A connected region of one (quantised) colour: its box, pixel count and mean RGB colour."""

    bbox: list[float]
    area: int
    colour: tuple[int, int, int]


def rectangles(bgr: np.ndarray, min_side: int = 10) -> list[list[float]]:
    """Boxes of the closed, nearly rectangular outlines in ``bgr`` (an 8-bit BGR image), largest first.

    Outlines as large as the picture (its frame) are left out; of two outlines boxing the same shape
    the larger is kept.
    """
    import cv2

    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    edges = cv2.Canny(grey, CANNY_LOW, CANNY_HIGH)
    edges = cv2.dilate(edges, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    height, width = grey.shape[:2]
    found: list[list[float]] = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if w < min_side or h < min_side or (w >= 0.98 * width and h >= 0.98 * height):
            continue
        hull = cv2.convexHull(contour)
        if cv2.contourArea(hull) < RECTANGULARITY * w * h:
            continue
        found.append([float(x), float(y), float(x + w), float(y + h)])
    found.sort(key=lambda box: (box[2] - box[0]) * (box[3] - box[1]), reverse=True)
    kept: list[list[float]] = []
    for box in found:
        if all(box_iou(box, other) < SAME_SHAPE_IOU for other in kept):
            kept.append(box)
    return kept


def background_colour(rgb: np.ndarray) -> np.ndarray:
    """The most common quantised colour along the picture's border (what objects stand on)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.int32) // COLOUR_STEP
    values, counts = np.unique(border, axis=0, return_counts=True)
    return np.asarray(values[int(np.argmax(counts))])


def colour_blobs(rgb: np.ndarray) -> list[Blob]:
    """Connected regions of one quantised colour that is not the background, largest first."""
    import cv2

    height, width = rgb.shape[:2]
    quantised = rgb.astype(np.int32) // COLOUR_STEP
    background = background_colour(rgb)
    foreground = np.abs(quantised - background).max(axis=2) > BACKGROUND_TOLERANCE
    codes = (quantised[..., 0] * 64 + quantised[..., 1] * 8 + quantised[..., 2]).astype(np.int32)
    min_area = max(16, int(MIN_BLOB_SHARE * width * height))
    blobs: list[Blob] = []
    for code in np.unique(codes[foreground]):
        mask = ((codes == code) & foreground).astype(np.uint8)
        if int(mask.sum()) < min_area:
            continue
        # A thin seam of another quantised colour (anti-aliasing, shading) must not split an object.
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for label in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[label])
            if area < min_area:
                continue
            colour = rgb[labels == label].mean(axis=0)
            blobs.append(
                Blob([float(x), float(y), float(x + w), float(y + h)], area, tuple(int(c) for c in colour))  # type: ignore[arg-type]
            )
    return sorted(blobs, key=lambda blob: blob.area, reverse=True)
