"""Box geometry: one canonical form, converted only at the edges.

The canonical box is ``[x1, y1, x2, y2]`` in float pixels of the frame it belongs to, origin
top-left, with ``0 <= x1 < x2 <= width`` and ``0 <= y1 < y2 <= height``.

Edge formats:

* Qwen3-VL ``bbox_2d`` / ``point_2d``: integers relative to the frame on a 0-1000 scale.
* COCO: ``[x, y, w, h]`` pixels.
* Label Studio: percent of the frame (0-100), ``x, y, width, height``.

>>> to_qwen_1000([96.0, 54.0, 192.0, 108.0], width=1920, height=1080)
[50, 50, 100, 100]
>>> from_qwen_1000([50, 50, 100, 100], width=1920, height=1080)
[96.0, 54.0, 192.0, 108.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = list[float]

QWEN_SCALE = 1000


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def clip_box(box: Sequence[float], width: float, height: float) -> Box:
    """Clamp a box into the frame; the result may be empty (see :func:`is_valid_box`)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [_clamp(x1, 0, width), _clamp(y1, 0, height), _clamp(x2, 0, width), _clamp(y2, 0, height)]


def overhang(box: Sequence[float], width: float, height: float) -> float:
    """How far (pixels) a box reaches outside a ``width`` x ``height`` frame; 0 when inside.

    >>> overhang([-3.0, 0.0, 10.0, 10.0], 100, 100), overhang([0, 0, 100, 100], 100, 100)
    (3.0, 0.0)
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    return max(0.0, -x1, -y1, x2 - width, y2 - height, x1 - width, y1 - height, -x2, -y2)


def is_valid_box(box: Sequence[float], width: float, height: float) -> bool:
    """True when the box is non-empty and lies inside a ``width`` x ``height`` frame."""
    if len(box) != 4:
        return False
    x1, y1, x2, y2 = (float(v) for v in box)
    return 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


def to_qwen_1000(box: Sequence[float], width: float, height: float) -> list[int]:
    """Pixels -> Qwen3-VL relative 0-1000 integers, clamped to the scale."""
    scales = (width, height, width, height)
    return [int(_clamp(round(float(v) / s * QWEN_SCALE), 0, QWEN_SCALE)) for v, s in zip(box, scales)]


def from_qwen_1000(box: Sequence[float], width: float, height: float) -> Box:
    """Qwen3-VL relative 0-1000 -> pixels of a ``width`` x ``height`` frame."""
    scales = (width, height, width, height)
    return [float(v) / QWEN_SCALE * s for v, s in zip(box, scales)]


def point_to_qwen_1000(point: Sequence[float], width: float, height: float) -> list[int]:
    x, y = point
    return [
        int(_clamp(round(float(x) / width * QWEN_SCALE), 0, QWEN_SCALE)),
        int(_clamp(round(float(y) / height * QWEN_SCALE), 0, QWEN_SCALE)),
    ]


def point_from_qwen_1000(point: Sequence[float], width: float, height: float) -> list[float]:
    x, y = point
    return [float(x) / QWEN_SCALE * width, float(y) / QWEN_SCALE * height]


def to_coco(box: Sequence[float]) -> list[float]:
    """``[x1, y1, x2, y2]`` -> COCO ``[x, y, w, h]``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def from_coco(box: Sequence[float]) -> Box:
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def to_label_studio(box: Sequence[float], width: float, height: float) -> dict[str, float]:
    """Pixels -> Label Studio rectangle value in percent of the frame."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return {
        "x": x1 / width * 100.0,
        "y": y1 / height * 100.0,
        "width": (x2 - x1) / width * 100.0,
        "height": (y2 - y1) / height * 100.0,
    }


def from_label_studio(value: dict[str, float], width: float, height: float) -> Box:
    x1 = value["x"] / 100.0 * width
    y1 = value["y"] / 100.0 * height
    return [x1, y1, x1 + value["width"] / 100.0 * width, y1 + value["height"] / 100.0 * height]


def box_area(box: Sequence[float]) -> float:
    """Area of a box (0 for an empty or inverted one)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)


def intersection_area(a: Sequence[float], b: Sequence[float]) -> float:
    """Area two boxes share."""
    width = min(float(a[2]), float(b[2])) - max(float(a[0]), float(b[0]))
    height = min(float(a[3]), float(b[3])) - max(float(a[1]), float(b[1]))
    return max(width, 0.0) * max(height, 0.0)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (0 when either is empty); :func:`iou_matrix` for many."""
    inter = intersection_area(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if inter > 0 and union > 0 else 0.0


def overlap_fraction(inner: Sequence[float], outer: Sequence[float]) -> float:
    """Share of ``inner``'s area that ``outer`` covers (0 when ``inner`` is empty).

    >>> overlap_fraction([0, 0, 10, 10], [5, 0, 20, 10])
    0.5
    """
    area = box_area(inner)
    return intersection_area(inner, outer) / area if area > 0 else 0.0


def boxes_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when two boxes share some area (touching edges do not count)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def box_center(box: Sequence[float]) -> tuple[float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 + x2) / 2, (y1 + y2) / 2


def contains_point(box: Sequence[float], point: Sequence[float]) -> bool:
    """True when ``point`` lies in ``box``, edges included."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1 <= float(point[0]) <= x2 and y1 <= float(point[1]) <= y2


def quad_to_box(points: Sequence[Sequence[float]]) -> Box:
    """Axis-aligned box around a polygon (e.g. an OCR detector's four corner points)."""
    array = np.asarray(points, dtype=float)
    return [float(array[:, 0].min()), float(array[:, 1].min()), float(array[:, 0].max()), float(array[:, 1].max())]


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy arrays, vectorised -> ``(N, M)``.

    Leading batch dimensions broadcast: ``(F, N, 4)`` and ``(F, M, 4)`` give ``(F, N, M)``, so many
    frames with equal box counts take one call.
    """
    a = np.asarray(boxes_a, dtype=float)
    b = np.asarray(boxes_b, dtype=float)
    a = a.reshape(-1, 4) if a.ndim < 3 else a
    b = b.reshape(-1, 4) if b.ndim < 3 else b
    ix1 = np.maximum(a[..., :, None, 0], b[..., None, :, 0])
    iy1 = np.maximum(a[..., :, None, 1], b[..., None, :, 1])
    ix2 = np.minimum(a[..., :, None, 2], b[..., None, :, 2])
    iy2 = np.minimum(a[..., :, None, 3], b[..., None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)
