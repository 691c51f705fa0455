"""The annotation payload of each task: its typed shape, where its boxes and points live, one walk.

A payload is JSON: the ``payload`` column of the annotation manifests, a row of the workbench
database, a prelabel backend's answer after parsing. In memory it stays the dict ``json.loads``
gives, so every stage reads and writes the same shape without copying; that shape is typed here,
per task, as a :class:`typing.TypedDict` (what mypy checks), and :func:`validate_payload` checks a
payload against it (pydantic) wherever payloads come in: a backend's answer, an editor's save, a
Label Studio import, the gates.

Geometry is the canonical one (see :mod:`qwen_dataset.geometry`): a box is ``[x1, y1, x2, y2]``
float pixels of the frame, a point ``[x, y]`` pixels; other conventions exist only at the edges.

:data:`TASKS` is the one registry of what each task has: its payload type, where its boxes live (a
list of items that each carry a ``bbox``, or one tree of nodes), which item field labels a box,
which fields two annotators must agree on, where its points live, and which frames it applies
to. Every module that reads or moves boxes (agreement, augmentation, exporters, gates, the
workbench) goes through :func:`iter_boxes` / :func:`iter_points`, so a new task is one entry here.

>>> payload = {"regions": [{"bbox": [0.0, 0.0, 10.0, 5.0], "text": "Hi"}]}
>>> [(box.path, box.label, box.item["bbox"]) for box in iter_boxes("ocr", payload)]
[('$.regions[0]', 'text', [0.0, 0.0, 10.0, 5.0])]
>>> tree = {"tag": "body", "bbox": [0, 0, 9, 9], "children": [{"tag": "p", "bbox": [1, 1, 2, 2], "children": []}]}
>>> [(index, parent, depth, path) for index, parent, depth, _, path in walk_layout(tree)]
[(0, None, 0, '$.layout'), (1, 0, 1, '$.layout.children[0]')]
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from typing import Annotated, Any, NamedTuple, Required

import numpy as np
import pandas as pd
from annotated_types import Len
from pydantic import AfterValidator, TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic validates TypedDicts from here on Python 3.11

from qwen_dataset.records import AnnotationStatus, FrameKind, Task, load_payload


def _finite(values: list[float]) -> list[float]:
    if not all(math.isfinite(value) for value in values):
        raise ValueError("coordinates must be finite numbers")
    return values


def _finite_number(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("times must be finite numbers")
    return value


#: ``[x1, y1, x2, y2]`` float pixels; validation asks for four finite numbers.
Box = Annotated[list[float], Len(4, 4), AfterValidator(_finite)]
#: ``[x, y]`` float pixels.
Point = Annotated[list[float], Len(2, 2), AfterValidator(_finite)]
#: Seconds from the start of a video.
Seconds = Annotated[float, AfterValidator(_finite_number)]


# --------------------------------------------------------------------------------------------
# The payload of each task
# --------------------------------------------------------------------------------------------


class OcrRegion(TypedDict, total=False):
    bbox: Required[Box]
    text: str
    confidence: float | None  # engines that calibrate one (RapidOCR); None for a VLM
    language: str  # "zh" | "en" | "mixed" | "other" (or what a reviewer typed)
    font_style: str | None  # None: not known (a reviewer left it unset)
    reading_order: int | None


class OcrPayload(TypedDict, total=False):
    regions: list[OcrRegion]  # in reading order


class GuiElement(TypedDict, total=False):
    bbox: Required[Box]
    role: str  # button, input, link, checkbox, ...
    text: str


class GuiAction(TypedDict, total=False):
    type: Required[str]  # click, type, scroll, long_press, drag, key, wait
    target: int | None  # index into the elements
    point: Point | None
    end_point: Point | None
    text: str | None
    direction: str | None


class GuiActionPayload(TypedDict, total=False):
    elements: list[GuiElement]
    instruction: str  # what the actions carry out
    requested_instruction: str  # the instruction the annotation was asked for
    actions: list[GuiAction]


class SpatialObject(TypedDict, total=False):
    bbox: Required[Box]
    label: str
    occluded: bool


#: The predicates of spatial relations (``subject predicate object``), in the order editors list them.
#: ``inside``: the subject's box lies within the object's; ``overlaps``: the boxes intersect, neither
#: inside the other; ``occludes``: the subject hides part of the object (it is in front of it).
SPATIAL_PREDICATES = (
    "left_of",
    "right_of",
    "above",
    "below",
    "inside",
    "overlaps",
    "in_front_of",
    "behind",
    "occludes",
)


class SpatialRelation(TypedDict):
    subject: int  # object indices
    predicate: str  # one of SPATIAL_PREDICATES
    object: int


class SpatialPayload(TypedDict, total=False):
    objects: list[SpatialObject]
    relations: list[SpatialRelation]
    depth_order: list[int]  # object indices, nearest first


class LayoutNode(TypedDict, total=False):
    tag: str
    role: str
    bbox: Required[Box]
    children: list[LayoutNode]


class ImageToCodePayload(TypedDict, total=False):
    html: str
    layout: LayoutNode | None


class VideoEvent(TypedDict, total=False):
    start: Required[Seconds]
    end: Required[Seconds]
    description: str
    frame_ids: list[str]  # sampled frames inside the event
    keyframe: str  # the frame that shows the event best (an engine's choice)
    needs_description: bool  # the description is a seed (on-screen text) that a person must complete
    start_raw: float  # the times before boundary alignment
    end_raw: float


class EventAlignment(TypedDict, total=False):
    source: str
    tolerance_s: float
    cuts: list[float]
    audio_changes: list[float]


class VideoEventPayload(TypedDict, total=False):
    events: list[VideoEvent]
    alignment: EventAlignment


Payload = OcrPayload | GuiActionPayload | SpatialPayload | ImageToCodePayload | VideoEventPayload


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BoxSource:
    """Where a task keeps its boxes, and how to read one.

    ``key`` names a list of items that each hold a ``bbox`` or, with ``tree``, one root node whose
    ``children`` nest. A box's label is its item's ``label_field`` or, without one, ``fixed_label``.
    ``compared`` are the item fields two annotators of one item must agree on beside box and label.
    """

    key: str
    item: str  # what one box is called in exports: region, element, object, block
    label_field: str | None
    fixed_label: str = ""
    tree: bool = False
    compared: tuple[str, ...] = ()
    coco_supercategory: str = ""
    order_field: str | None = None  # items are listed by this field (OCR: reading order)


@dataclasses.dataclass(frozen=True)
class PointSource:
    """Where a task keeps points: each item of ``key`` may hold a point under each of ``fields``."""

    key: str
    fields: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What one task's payload holds (see the module docstring)."""

    task: str
    payload_type: type
    frame_kinds: tuple[str, ...]
    boxes: BoxSource | None = None
    points: PointSource | None = None
    per_video: bool = False  # one payload per video, filed under its first sampled frame


_STILLS = (FrameKind.IMAGE.value, FrameKind.PAGE.value)
# Text in sampled video frames (captions, screens) is worth reading too; a template may narrow it.
_ALL_FRAMES = (*_STILLS, FrameKind.VIDEO_FRAME.value)

#: Every task, in the order a backend runs them.
TASKS: dict[str, TaskSpec] = {
    Task.OCR.value: TaskSpec(
        Task.OCR.value,
        OcrPayload,
        _ALL_FRAMES,
        boxes=BoxSource(
            "regions",
            "region",
            None,
            fixed_label="text",
            compared=("text",),
            coco_supercategory="ocr",
            order_field="reading_order",
        ),
    ),
    Task.GUI_ACTION.value: TaskSpec(
        Task.GUI_ACTION.value,
        GuiActionPayload,
        _STILLS,
        boxes=BoxSource("elements", "element", "role", compared=("text",), coco_supercategory="gui"),
        points=PointSource("actions", ("point", "end_point")),
    ),
    Task.SPATIAL.value: TaskSpec(
        Task.SPATIAL.value,
        SpatialPayload,
        _STILLS,
        boxes=BoxSource("objects", "object", "label", compared=("occluded",), coco_supercategory="object"),
    ),
    Task.IMAGE_TO_CODE.value: TaskSpec(
        Task.IMAGE_TO_CODE.value,
        ImageToCodePayload,
        _STILLS,
        boxes=BoxSource("layout", "block", "role", tree=True, compared=("tag",), coco_supercategory="layout"),
    ),
    Task.VIDEO_EVENT.value: TaskSpec(
        Task.VIDEO_EVENT.value, VideoEventPayload, (FrameKind.VIDEO_FRAME.value,), per_video=True
    ),
}

#: The tasks in run order, and those whose payloads carry boxes.
TASK_ORDER: tuple[str, ...] = tuple(TASKS)
BOX_TASKS: tuple[str, ...] = tuple(name for name, spec in TASKS.items() if spec.boxes is not None)


def task_spec(task: str) -> TaskSpec:
    """The registry entry of ``task``; a ValueError naming the known tasks otherwise."""
    try:
        return TASKS[str(task)]
    except KeyError:
        raise ValueError(f"unknown task {task!r}: the tasks are {list(TASK_ORDER)}") from None


def box_source(task: str) -> BoxSource:
    """Where ``task`` keeps its boxes; a ValueError for a task without boxes."""
    source = task_spec(task).boxes
    if source is None:
        raise ValueError(f"task {task!r} has no boxes; the tasks with boxes are {list(BOX_TASKS)}")
    return source


# --------------------------------------------------------------------------------------------
# Walking boxes and points
# --------------------------------------------------------------------------------------------


class BoxItem(NamedTuple):
    """One box of a payload. ``item`` is the dict holding ``bbox``: write a moved box back there."""

    # Position among the payload's boxes (pre-order for a tree); not "index", which would hide tuple.index().
    position: int
    item: dict[str, Any]
    label: str
    parent: int | None  # a tree node's parent index, else None
    depth: int
    path: str  # JSON path of the item, e.g. "$.regions[3]" or "$.layout.children[0]"


class PointItem(NamedTuple):
    """One point of a payload: ``item[field]`` is ``[x, y]`` pixels."""

    item: dict[str, Any]
    field: str
    path: str


def walk_layout(
    root: Mapping[str, Any] | None, path: str = "$.layout"
) -> Iterator[tuple[int, int | None, int, dict[str, Any], str]]:
    """Pre-order walk of a layout tree: ``(index, parent_index, depth, node, path)``.

    Iterative, so a deep tree cannot hit the recursion limit.
    """
    if not root:
        return
    stack: list[tuple[Any, int | None, int, str]] = [(root, None, 0, path)]
    index = 0
    while stack:
        node, parent, depth, where = stack.pop()
        yield index, parent, depth, node, where
        children = node.get("children") or []
        stack.extend(
            (child, index, depth + 1, f"{where}.children[{position}]")
            for position, child in reversed(list(enumerate(children)))
        )
        index += 1


def iter_boxes(task: str, payload: Mapping[str, Any] | None) -> Iterator[BoxItem]:
    """Every box of a payload in payload order (OCR: list order; layout: pre-order)."""
    source = task_spec(task).boxes
    if source is None or not payload:
        return

    def label_of(item: Mapping[str, Any]) -> str:
        return source.fixed_label if source.label_field is None else str(item.get(source.label_field) or "")

    if source.tree:
        for index, parent, depth, node, path in walk_layout(payload.get(source.key), f"$.{source.key}"):
            yield BoxItem(index, node, label_of(node), parent, depth, path)
        return
    for index, item in enumerate(payload.get(source.key) or []):
        yield BoxItem(index, item, label_of(item), None, 0, f"$.{source.key}[{index}]")


@cache
def _item_paths(key: str, count: int) -> tuple[str, ...]:
    return tuple(f"$.{key}[{index}]" for index in range(count))


def box_items(task: str, payload: Mapping[str, Any] | None) -> list[BoxItem]:
    """``list(iter_boxes(task, payload))``, built in one pass: an export walks a million boxes."""
    source = task_spec(task).boxes
    if source is None or not payload:
        return []
    if source.tree:
        return list(iter_boxes(task, payload))
    items = payload.get(source.key) or []
    # Paths are shared (cached per count, rounded up) instead of formatted per box.
    paths = _item_paths(source.key, max(16, 1 << (len(items) - 1).bit_length()))
    new = tuple.__new__  # what BoxItem._make calls, without a Python frame per box
    if source.label_field is None:
        label = source.fixed_label
        return [new(BoxItem, (i, item, label, None, 0, paths[i])) for i, item in enumerate(items)]
    field = source.label_field
    return [new(BoxItem, (i, item, str(item.get(field) or ""), None, 0, paths[i])) for i, item in enumerate(items)]


def iter_points(task: str, payload: Mapping[str, Any] | None) -> Iterator[PointItem]:
    """Every point of a payload that is set (GUI actions' ``point`` and ``end_point``)."""
    source = task_spec(task).points
    if source is None or not payload:
        return
    for index, item in enumerate(payload.get(source.key) or []):
        for field in source.fields:
            if item.get(field) is not None:
                yield PointItem(item, field, f"$.{source.key}[{index}].{field}")


def put_in_order(task: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Sort a payload's box items by their task's ``order_field`` (in place; ties keep list order).

    An item without the field gets its list position first, as every reader of the field assumes.
    """
    source = task_spec(task).boxes
    if source is None or source.order_field is None or source.tree:
        return payload
    items = payload.get(source.key) or []
    field = source.order_field
    for position, item in enumerate(items):
        if item.get(field) is None:
            item[field] = position
    # A stable sort: ties keep their list order.
    payload[source.key] = sorted(items, key=operator.itemgetter(field))
    return payload


def boxes_and_labels(task: str, payload: Mapping[str, Any] | str | None) -> tuple[list[Box], list[str]]:
    """The boxes of a payload (a dict or its JSON text) and their labels, in :func:`iter_boxes` order."""
    data = json.loads(payload) if isinstance(payload, str) else payload
    items = list(iter_boxes(task, data))
    return [item.item["bbox"] for item in items], [item.label for item in items]


def box_contents(task: str, item: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a box item that two annotators must agree on (see :attr:`BoxSource.compared`)."""
    return {field: item.get(field) for field in box_source(task).compared}


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


class PayloadError(ValueError):
    """A payload does not have its task's shape; the message names the first place that is wrong."""


@cache
def _adapter(task: str) -> TypeAdapter[Any]:
    return TypeAdapter(task_spec(task).payload_type)


def validate_payload(task: str, payload: Any) -> dict[str, Any]:
    """Check ``payload`` against its task's shape and return it; :class:`PayloadError` says where it is wrong.

    Fields the shape does not name are allowed (a reviewer's note, an engine's extra); a box needs
    four finite numbers, a point two, an event finite times. The check is structural: whether a box
    lies inside its frame is the gates' question (:mod:`qwen_dataset.quality.validation`).
    """
    task_spec(task)
    if not isinstance(payload, dict):
        raise PayloadError(f"a {task} payload must be a JSON object, not {type(payload).__name__}")
    try:
        _adapter(task).validate_python(payload)
    except ValidationError as error:
        first = error.errors()[0]
        where = "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
        raise PayloadError(f"{task} payload: {where}: {first['msg']}") from None
    return payload


def payload_problem(task: str, payload_json: str) -> str:
    """Why a stored payload (JSON text) is not a valid ``task`` payload; empty when it is."""
    try:
        validate_payload(task, load_payload(payload_json))
    except (PayloadError, ValueError) as error:
        return str(error)
    return ""


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

BOX_COLUMNS = (
    "annotation_id",
    "frame_id",
    "task",
    "source",
    "box_index",
    "label",
    "x1",
    "y1",
    "x2",
    "y2",
    "text",
    "confidence",
)


def boxes_table(
    annotations: pd.DataFrame, frames: pd.DataFrame | None = None, tasks: Iterable[str] = BOX_TASKS
) -> pd.DataFrame:
    """One row per box of every ok annotation of ``tasks`` (:data:`BOX_COLUMNS`), with the frame's
    ``width`` and ``height`` when ``frames`` is given. ``text`` and ``confidence`` are the item's own
    (OCR regions and GUI elements have a text; only OCR engines report a confidence)."""
    wanted = [str(task) for task in tasks]
    ok = annotations[(annotations["status"] == AnnotationStatus.OK.value) & annotations["task"].isin(wanted)]
    rows: list[tuple[Any, ...]] = []
    for annotation_id, frame_id, task, source, payload in zip(
        ok["annotation_id"], ok["frame_id"], ok["task"], ok["source"], ok["payload"]
    ):
        for box in iter_boxes(task, load_payload(payload)):
            x1, y1, x2, y2 = (float(value) for value in box.item["bbox"])
            rows.append(
                (
                    annotation_id,
                    frame_id,
                    task,
                    source,
                    box.position,
                    box.label,
                    x1,
                    y1,
                    x2,
                    y2,
                    box.item.get("text", ""),
                    box.item.get("confidence"),
                )
            )
    table = pd.DataFrame(rows, columns=list(BOX_COLUMNS))
    table = table.astype({"x1": float, "y1": float, "x2": float, "y2": float, "confidence": float})
    if frames is None:
        return table
    if not len(frames):
        return table.assign(width=pd.Series(dtype=float), height=pd.Series(dtype=float))
    sizes = frames.drop_duplicates("frame_id").set_index("frame_id")[["width", "height"]]
    return table.join(sizes, on="frame_id")


def boxes_array(task: str, payload: Mapping[str, Any] | None) -> np.ndarray:
    """The payload's boxes as an ``(N, 4)`` float array (``(0, 4)`` when it has none)."""
    boxes = [item.item["bbox"] for item in iter_boxes(task, payload)]
    return np.asarray(boxes, dtype=float).reshape(-1, 4)
