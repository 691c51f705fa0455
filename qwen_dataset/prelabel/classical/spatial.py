"""Spatial relations and depth order from object boxes, and classical object proposals.

**Relations** (:func:`spatial_relations`), for every ordered pair of objects, from their boxes alone
(predicates: :data:`qwen_dataset.payloads.SPATIAL_PREDICATES`):

* ``inside``: at least ``INSIDE_SHARE`` of the subject's box lies in the object's, which is larger;
* ``overlaps``: the boxes intersect and neither is inside the other (listed once per pair, lower index first);
* ``occludes``: the pair overlaps and the subject comes first in the depth order;
* ``left_of`` / ``above``: the subject's box ends before the object's begins along x / y (an
  overlap of up to ``SIDE_TOLERANCE`` of the smaller side still counts). Only these directions
  are written; their inverses (``right_of``, ``below``) are the same fact read from the other side.

**Depth order** (:func:`depth_order`), nearest first: the ground-plane cue of a photo (the lower an
object's bottom edge, the nearer it stands), except that an object inside another is in front of
it (a cup on a tray). Boxes cannot tell which of two overlapping objects really hides the other: a
reviewer checks ``occludes``.

:func:`fill_relations` adds these relations to a payload without touching the pairs a person has
already related: the workbench calls it when an annotator draws boxes.

**Proposals** (:func:`propose_objects`): no detector whose weights ship inside a registry package
fits here (see the README), so objects are proposed classically: the connected regions of one
colour that stand out from the picture's background
(:func:`qwen_dataset.prelabel.classical.regions.colour_blobs`), labelled by their colour
("red object"). A person names them, fixes their boxes and draws what was missed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from qwen_dataset.prelabel.classical.regions import BLOBS_VERSION, colour_blobs

INSIDE_SHARE = 0.9
SIDE_TOLERANCE = 0.1
MAX_OBJECT_SHARE = 0.6  # a blob covering more of the picture than this is a backdrop, not an object
MAX_OBJECTS = 20
SPATIAL_VERSION = f"spatial-1;inside{INSIDE_SHARE:g};side{SIDE_TOLERANCE:g};{BLOBS_VERSION};max{MAX_OBJECTS}"

#: Inverse predicates: ``a right_of b`` says ``b left_of a``; a symmetric one is its own inverse.
INVERSE = {"right_of": "left_of", "below": "above", "behind": "in_front_of", "overlaps": "overlaps"}

_COLOUR_NAMES = {
    "red": (200, 40, 40),
    "orange": (240, 130, 30),
    "yellow": (230, 200, 40),
    "green": (40, 150, 60),
    "blue": (40, 70, 200),
    "purple": (130, 50, 160),
    "pink": (230, 120, 170),
    "brown": (120, 80, 40),
    "black": (20, 20, 20),
    "grey": (128, 128, 128),
    "white": (245, 245, 245),
}


def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _intersection(a: Sequence[float], b: Sequence[float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def is_inside(inner: Sequence[float], outer: Sequence[float]) -> bool:
    """Whether ``inner`` lies (``INSIDE_SHARE``) within the larger box ``outer``."""
    area = _area(inner)
    return 0 < area < _area(outer) and _intersection(inner, outer) >= INSIDE_SHARE * area


def _before(a: Sequence[float], b: Sequence[float], axis: int) -> bool:
    """Whether ``a`` ends before ``b`` begins along ``axis`` (0: x, 1: y), within the tolerance."""
    smaller = min(a[axis + 2] - a[axis], b[axis + 2] - b[axis])
    return a[axis + 2] - b[axis] <= SIDE_TOLERANCE * smaller and (a[axis] + a[axis + 2]) < (b[axis] + b[axis + 2])


def depth_order(boxes: Sequence[Sequence[float]]) -> list[int]:
    """Object indices nearest first (see the module docstring)."""
    order = sorted(range(len(boxes)), key=lambda i: (-boxes[i][3], i))
    changed = True
    while changed:  # an object inside another moves in front of it; nesting is acyclic, so this ends
        changed = False
        for inner in range(len(boxes)):
            for outer in range(len(boxes)):
                if inner != outer and is_inside(boxes[inner], boxes[outer]) and order.index(inner) > order.index(outer):
                    order.remove(inner)
                    order.insert(order.index(outer), inner)
                    changed = True
    return order


def spatial_relations(boxes: Sequence[Sequence[float]], order: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The relations between objects with ``boxes`` (see the module docstring); ``order`` is the depth order."""
    rank = {index: position for position, index in enumerate(order if order is not None else depth_order(boxes))}
    relations: list[dict[str, Any]] = []

    def add(subject: int, predicate: str, obj: int) -> None:
        relations.append({"subject": subject, "predicate": predicate, "object": obj})

    for a in range(len(boxes)):
        for b in range(len(boxes)):
            if a == b:
                continue
            first, second = boxes[a], boxes[b]
            if is_inside(first, second):
                add(a, "inside", b)
            elif _intersection(first, second) > 0 and not is_inside(second, first):
                if a < b:
                    add(a, "overlaps", b)
                if rank.get(a, a) < rank.get(b, b):
                    add(a, "occludes", b)
            if _before(first, second, 0):
                add(a, "left_of", b)
            if _before(first, second, 1):
                add(a, "above", b)
    return relations


def fill_relations(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload with relations and a depth order computed for what a person has not set.

    Pairs that already have a relation (either way round) keep exactly theirs; a given depth order
    is kept; the occlusion flag is set for objects something nearer overlaps, when not set.
    """
    objects = [dict(item) for item in payload.get("objects") or []]
    boxes = [[float(v) for v in item["bbox"]] for item in objects]
    given = list(payload.get("relations") or [])
    related = {frozenset((r["subject"], r["object"])) for r in given}
    order = list(payload.get("depth_order") or []) or depth_order(boxes)
    computed = [r for r in spatial_relations(boxes, order) if frozenset((r["subject"], r["object"])) not in related]
    hidden = {r["object"] for r in computed if r["predicate"] == "occludes"}
    for index, item in enumerate(objects):
        item.setdefault("occluded", index in hidden)
    return {**payload, "objects": objects, "relations": given + computed, "depth_order": order}


def colour_name(colour: Sequence[float]) -> str:
    """The nearest plain colour name of an RGB colour."""
    rgb = np.asarray(colour[:3], dtype=float)
    return min(_COLOUR_NAMES, key=lambda name: float(np.sum((rgb - np.asarray(_COLOUR_NAMES[name])) ** 2)))


def propose_objects(rgb: np.ndarray) -> list[dict[str, Any]]:
    """Object boxes from colour regions (see the module docstring), largest first."""
    height, width = rgb.shape[:2]
    objects = []
    for blob in colour_blobs(rgb):
        if blob.area > MAX_OBJECT_SHARE * width * height:
            continue
        objects.append({"bbox": [round(v, 2) for v in blob.bbox], "label": f"{colour_name(blob.colour)} object"})
        if len(objects) == MAX_OBJECTS:
            break
    return objects


def spatial_payload(rgb: np.ndarray) -> dict[str, Any]:
    """The ``spatial`` payload of one picture: proposed objects, their relations and depth order."""
    return fill_relations({"objects": propose_objects(rgb)})
