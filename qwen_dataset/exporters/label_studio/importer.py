"""A Label Studio JSON export (tasks with ``annotations``) -> annotation records with canonical payloads."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from qwen_dataset.exporters import action_dsl
from qwen_dataset.exporters.label_studio.config import (
    CHILD_OF,
    DEFAULT_FRAME_RATE,
    LS_TEMPLATE_VERSION,
    OCCLUDED,
    LabelStudioImportError,
    check_frame_rate,
    frame_to_seconds,
)
from qwen_dataset.exporters.stream import frame_size_index
from qwen_dataset.geometry import clip_box, from_label_studio, is_valid_box, overhang
from qwen_dataset.payloads import SPATIAL_PREDICATES, TASK_ORDER, PayloadError, validate_payload, walk_layout
from qwen_dataset.prelabel.video_events import frame_ids_for_event
from qwen_dataset.records import (
    AnnotationRecord,
    AnnotationStatus,
    FrameKind,
    Source,
    Task,
    annotation_id_for,
    dump_payload,
    utc_now,
)


@dataclasses.dataclass
class _Region:
    """The results of one Label Studio region, gathered by id."""

    region_id: str
    kind: str = ""  # the type of the shape result (rectangle, rectanglelabels, timelinelabels)
    value: dict[str, Any] = dataclasses.field(default_factory=dict)
    label: str = ""
    score: float | None = None
    controls: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # from_name -> value

    def text(self, control: str) -> str | None:
        value = self.controls.get(control)
        if value is None:
            return None
        return "\n".join(str(part) for part in value.get("text") or [])

    def choices(self, control: str) -> list[str]:
        value = self.controls.get(control)
        return list(value.get("choices") or []) if value else []


_SHAPES = {"rectangle", "rectanglelabels", "timelinelabels"}
_SHAPE_CONTROL = {
    Task.OCR.value: "bbox",
    Task.GUI_ACTION.value: "element",
    Task.SPATIAL.value: "object",
    Task.IMAGE_TO_CODE.value: "block",
    Task.VIDEO_EVENT.value: "event",
}


class _Parsed:
    """One Label Studio annotation's results: regions in order, per-task texts, relations."""

    def __init__(self, results: list[dict[str, Any]], task: str) -> None:
        self.regions: dict[str, _Region] = {}
        self.texts: dict[str, str] = {}
        self.relations: list[tuple[str, str, list[str]]] = []
        shape_control = _SHAPE_CONTROL[task]
        # Results come in any order; an id is a region when one of its results is the task's shape.
        shape_ids = {
            _region_id(result)
            for result in results
            if result.get("type") in _SHAPES and result.get("from_name") == shape_control
        }
        for result in results:
            kind = result.get("type", "")
            value = result.get("value") or {}
            region_id = result.get("id")
            from_name = result.get("from_name", "")
            if kind == "relation":
                self._relation(result)
            elif isinstance(region_id, str) and region_id in shape_ids:
                region = self.regions.setdefault(region_id, _Region(region_id))
                if kind in _SHAPES and from_name == shape_control:
                    region.kind, region.value = kind, value
                    labels = value.get(kind) if kind != "rectangle" else None
                    region.label = labels[0] if labels else ""
                    region.score = result.get("score")
                else:
                    region.controls[from_name] = value
            elif _is_per_region(value):
                raise LabelStudioImportError(
                    f"result {region_id!r} ({from_name}) belongs to no {shape_control!r} region"
                )
            elif kind == "textarea":
                self.texts[from_name] = "\n".join(str(part) for part in value.get("text") or [])

    def _relation(self, result: dict[str, Any]) -> None:
        source, target = result.get("from_id"), result.get("to_id")
        if not isinstance(source, str) or not isinstance(target, str):
            raise LabelStudioImportError(
                f"a relation result names no from_id and to_id region ({source!r} -> {target!r})"
            )
        if result.get("direction") == "left":  # the arrow points from to_id to from_id
            source, target = target, source
        self.relations.append((source, target, list(result.get("labels") or [])))

    def shapes(self) -> list[_Region]:
        return list(self.regions.values())


def _region_id(result: dict[str, Any]) -> str:
    """The id that gathers a region's results: shapes without one would all merge into one region."""
    region_id = result.get("id")
    if not isinstance(region_id, str) or not region_id:
        raise LabelStudioImportError(f"a {result.get('type')!r} result of {result.get('from_name')!r} has no region id")
    return region_id


def _is_per_region(value: dict[str, Any]) -> bool:
    # A per-region control's result repeats the region's geometry; a per-task one has none.
    return any(key in value for key in ("x", "ranges"))


#: How far (pixels) a box may reach past the frame's edge and still be taken, clipped to it:
#: percent round trips and a drag that ends on the edge land a hair outside, never more.
OVERHANG_TOLERANCE_PX = 1.0


def _pixel_box(region: _Region, width: int, height: int, where: str) -> list[float]:
    value = region.value
    try:
        percent = {key: float(value[key]) for key in ("x", "y", "width", "height")}
        rotation = float(value.get("rotation") or 0.0)
    except (KeyError, TypeError, ValueError) as error:
        raise LabelStudioImportError(f"{where}: not a rectangle value ({error})") from error
    if not all(math.isfinite(number) for number in (*percent.values(), rotation)):
        raise LabelStudioImportError(
            f"{where}: the box's position or size is not a finite number ({percent}, rotation {rotation}); draw it again"
        )
    box = from_label_studio(percent, width, height)
    if rotation:
        box = _rotated_envelope(box, rotation)
    beyond = overhang(box, width, height)
    if beyond > OVERHANG_TOLERANCE_PX:
        shown = [round(v, 1) for v in box]
        raise LabelStudioImportError(
            f"{where}: the box {shown} reaches {beyond:.1f} px outside the {width}x{height} frame; "
            "move it inside the picture"
        )
    clipped = clip_box(box, width, height)
    if not is_valid_box(clipped, width, height):
        raise LabelStudioImportError(f"{where}: the box {box} is empty; give it a width and a height")
    return clipped


def _rotated_envelope(box: list[float], degrees: float) -> list[float]:
    """Axis-aligned box around a rectangle rotated ``degrees`` clockwise about its top-left corner."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    corners = [(x1 + dx * cos - dy * sin, y1 + dx * sin + dy * cos) for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    return [min(xs), min(ys), max(xs), max(ys)]


def ocr_payload(parsed: _Parsed, width: int, height: int) -> dict[str, Any]:
    regions = []
    for order, region in enumerate(parsed.shapes()):
        regions.append(
            {
                "bbox": _pixel_box(region, width, height, f"region {region.region_id}"),
                "text": region.text("transcription") or "",
                "confidence": region.score,
                "language": region.text("language") or "",
                "font_style": next(iter(region.choices("font_style")), None),
                "reading_order": order,
            }
        )
    return {"regions": regions}


def gui_payload(parsed: _Parsed, width: int, height: int, requested_instruction: str) -> dict[str, Any]:
    shapes = parsed.shapes()
    index_of = {region.region_id: index for index, region in enumerate(shapes)}
    elements = [
        {
            "bbox": _pixel_box(region, width, height, f"element {region.region_id}"),
            "role": region.label or "other",
            "text": region.text("element_text") or "",
        }
        for region in shapes
    ]
    try:
        actions = action_dsl.parse(parsed.texts.get("actions", ""))
    except action_dsl.DslParseError as error:
        raise LabelStudioImportError(f"actions: {error}") from error
    for number, action in enumerate(actions):
        action["target"] = _element_index(action["target"], index_of, len(elements), number)
    return {
        "elements": elements,
        "instruction": parsed.texts.get("instruction", "").strip() or requested_instruction,
        "requested_instruction": requested_instruction,
        "actions": actions,
    }


def _element_index(target: int | str | None, index_of: dict[str, int], count: int, number: int) -> int | None:
    if target is None:
        return None
    if isinstance(target, str):
        if target not in index_of:
            raise LabelStudioImportError(f"actions: action {number} targets #{target}, which names no element region")
        return index_of[target]
    if not 0 <= target < count:
        raise LabelStudioImportError(f"actions: action {number} targets element {target} of {count}")
    return target


def spatial_payload(parsed: _Parsed, width: int, height: int) -> dict[str, Any]:
    shapes = parsed.shapes()
    index_of = {region.region_id: index for index, region in enumerate(shapes)}
    objects, ranked = [], []
    for index, region in enumerate(shapes):
        objects.append(
            {
                "bbox": _pixel_box(region, width, height, f"object {region.region_id}"),
                "label": region.text("label") or "",
                "occluded": OCCLUDED in region.choices("occluded"),
            }
        )
        depth = region.controls.get("depth", {}).get("number")
        if depth is not None:
            ranked.append((float(depth), index))
    relations = []
    for source, target, labels in parsed.relations:
        if source not in index_of or target not in index_of:
            raise LabelStudioImportError(f"a relation links {source} -> {target}, which are not both object regions")
        if not labels:
            # An arrow without a predicate says nothing a dataset can hold; dropping it would lose it silently.
            raise LabelStudioImportError(
                f"the relation {source} -> {target} has no predicate: choose one of {list(SPATIAL_PREDICATES)} "
                "for it in the Relations panel, or delete it"
            )
        for predicate in labels:
            if predicate not in SPATIAL_PREDICATES:
                raise LabelStudioImportError(f"relation label {predicate!r} is not one of {list(SPATIAL_PREDICATES)}")
            relations.append({"subject": index_of[source], "predicate": predicate, "object": index_of[target]})
    return {"objects": objects, "relations": relations, "depth_order": [index for _, index in sorted(ranked)]}


def image_to_code_payload(parsed: _Parsed, width: int, height: int) -> dict[str, Any]:
    shapes = parsed.shapes()
    index_of = {region.region_id: index for index, region in enumerate(shapes)}
    nodes: list[dict[str, Any]] = [
        {
            "tag": region.text("tag") or "",
            "role": region.label or "other",
            "bbox": _pixel_box(region, width, height, f"block {region.region_id}"),
            "children": [],
        }
        for region in shapes
    ]
    parents: dict[int, int] = {}
    for source, target, labels in parsed.relations:
        if CHILD_OF not in labels:
            continue
        if source not in index_of or target not in index_of:
            raise LabelStudioImportError(
                f"a child_of relation links {source} -> {target}, which are not both block regions"
            )
        child = index_of[source]
        if child in parents:
            raise LabelStudioImportError(f"block {source} has two parents; a layout is a tree")
        parents[child] = index_of[target]
    roots = [index for index in range(len(nodes)) if index not in parents]
    if len(roots) != 1:
        raise LabelStudioImportError(
            f"the layout needs exactly one root block (a block with no child_of relation), found {len(roots)}"
        )
    for child in range(len(nodes)):  # children in region order, as exported (pre-order)
        if child in parents:
            nodes[parents[child]]["children"].append(nodes[child])
    reached = sum(1 for _ in walk_layout(nodes[roots[0]])) if nodes else 0
    if reached != len(nodes):
        raise LabelStudioImportError("the child_of relations form a cycle; a layout is a tree")
    return {"html": parsed.texts.get("html", "").strip(), "layout": nodes[roots[0]]}


def video_event_payload(parsed: _Parsed, frame_rate: float, times: list[float], frame_ids: list[str]) -> dict[str, Any]:
    events = []
    for region in parsed.shapes():
        ranges = region.value.get("ranges") or []
        if not ranges:
            raise LabelStudioImportError(f"event {region.region_id} has no time range")
        start = frame_to_seconds(min(item["start"] for item in ranges), frame_rate)
        end = frame_to_seconds(max(item["end"] for item in ranges), frame_rate)
        if start > end:
            raise LabelStudioImportError(f"event {region.region_id} starts at {start} s after it ends at {end} s")
        events.append(
            {
                "start": start,
                "end": end,
                "description": (region.text("description") or "").strip(),
                "frame_ids": frame_ids_for_event(start, end, times, frame_ids),
            }
        )
    return {"events": events}


@dataclasses.dataclass(frozen=True)
class FrameIndex:
    """What an import needs to know about frames: sizes, upload and batch, a video's sampled frames."""

    sizes: dict[str, tuple[int, int]]
    owner: dict[str, tuple[str, str]]  # frame_id -> (upload_id, batch)
    videos: dict[str, tuple[list[float], list[str]]]  # upload_id -> (times, frame ids), by time

    @classmethod
    def of_frames(cls, frames: pd.DataFrame) -> FrameIndex:
        """The index of a frames manifest."""
        owner = {
            frame_id: (upload_id, batch)
            for frame_id, upload_id, batch in zip(
                frames["frame_id"].tolist(), frames["upload_id"].tolist(), frames["batch"].tolist(), strict=True
            )
        }
        video = frames[frames["kind"] == FrameKind.VIDEO_FRAME.value].sort_values(
            ["upload_id", "t", "frame_id"], kind="stable"
        )
        videos: dict[str, tuple[list[float], list[str]]] = {}
        columns = (video["upload_id"].tolist(), video["frame_id"].tolist(), video["t"].tolist())
        for upload_id, frame_id, t in zip(*columns, strict=True):
            if not pd.isna(t):
                times, ids = videos.setdefault(upload_id, ([], []))
                times.append(float(t))
                ids.append(frame_id)
        return cls(frame_size_index(frames), owner, videos)

    @classmethod
    def of_picture(cls, frame_id: str, upload_id: str, batch: str, width: int, height: int) -> FrameIndex:
        """The index of one still frame (an image or a page): what the workbench converts a save
        against, without building a manifest table for it on every request."""
        return cls({frame_id: (int(width), int(height))}, {frame_id: (upload_id, batch)}, {})


def _load_export(export_json: str | bytes | Path | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(export_json, Path):
        export_json = export_json.read_bytes()
    if isinstance(export_json, (str, bytes)):
        try:
            export_json = json.loads(export_json)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"not a Label Studio JSON export: {error}; export the project as JSON (not JSON-MIN or CSV)"
            ) from error
    if isinstance(export_json, dict):
        export_json = [export_json]
    if not isinstance(export_json, list):
        raise ValueError("a Label Studio JSON export is a list of tasks; export the project as JSON")
    return export_json


def _author(completion: dict[str, Any], source: str) -> str:
    if source == Source.AI:
        return str(completion.get("model_version") or "label-studio-prediction")
    who = completion.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return f"label-studio:{who if who not in (None, '') else 'unknown'}"


def _completions(ls_task: dict[str, Any], include_predictions: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    for completion in ls_task.get("annotations") or []:
        if not completion.get("was_cancelled"):
            yield Source.HUMAN.value, completion
    if include_predictions:
        for completion in ls_task.get("predictions") or []:
            yield Source.AI.value, completion


def from_label_studio_export(
    export_json: str | bytes | Path | list[dict[str, Any]],
    frames: pd.DataFrame | FrameIndex,
    *,
    task: str | None = None,
    frame_rate: float = DEFAULT_FRAME_RATE,
    include_predictions: bool = False,
) -> list[dict[str, Any]]:
    """A Label Studio JSON export -> annotation records (dicts with the fields of
    :class:`qwen_dataset.records.AnnotationRecord`, ``payload`` a canonical JSON string).

    Each task's ``data`` must carry ``frame_id`` and ``task`` (as :func:`to_label_studio_tasks`
    writes them; ``task=`` overrides the latter). Every submitted annotation becomes a
    ``source="human"`` record whose ``author`` is ``label-studio:<email or user id>``; cancelled
    (skipped) annotations are left out; with ``include_predictions`` the predictions come back
    too as ``source="ai"`` records. Percent boxes become pixels of the frame (rotated rectangles:
    their axis-aligned envelope). An annotation that cannot be converted (a box outside the
    frame, a broken action line, an unknown frame) becomes a ``status="failed"`` record with the
    reason in ``error``, so one bad annotation never stops the import. Records with the same
    ``annotation_id`` (same frame, task, source and author) keep the last one. ``frames`` is the
    frames manifest of the batch, or its :class:`FrameIndex`.
    """
    check_frame_rate(frame_rate)
    index = frames if isinstance(frames, FrameIndex) else FrameIndex.of_frames(frames)
    records: dict[str, dict[str, Any]] = {}
    for ls_task in _load_export(export_json):
        data = ls_task.get("data") or {}
        task_type = task or data.get("task")
        frame_id = str(data.get("frame_id") or "")
        for source, completion in _completions(ls_task, include_predictions):
            record = _import_completion(completion, source, data, task_type, frame_id, index, frame_rate)
            records[record["annotation_id"]] = record
    return list(records.values())


def _import_completion(
    completion: dict[str, Any],
    source: str,
    data: dict[str, Any],
    task_type: str | None,
    frame_id: str,
    index: FrameIndex,
    frame_rate: float,
) -> dict[str, Any]:
    author = _author(completion, source)
    upload_id, batch = index.owner.get(frame_id, (str(data.get("upload_id") or ""), ""))
    record = AnnotationRecord(
        annotation_id=annotation_id_for(frame_id, str(task_type or ""), source, author),
        frame_id=frame_id,
        upload_id=upload_id,
        batch=batch,
        task=str(task_type or ""),
        source=source,
        author=author,
        template_version=LS_TEMPLATE_VERSION,
        created_at=str(completion.get("updated_at") or completion.get("created_at") or utc_now()),
        status=AnnotationStatus.OK.value,
        error="",
        payload="",
        reviewed=False,
    )
    try:
        payload = canonical_payload(completion.get("result") or [], data, task_type, frame_id, index, frame_rate)
    except LabelStudioImportError as error:
        failed = dataclasses.replace(
            record, status=AnnotationStatus.FAILED.value, error=f"label_studio_import: {error}"
        )
        return dataclasses.asdict(failed)
    return dataclasses.asdict(dataclasses.replace(record, payload=dump_payload(payload)))


def canonical_payload(
    results: list[dict[str, Any]],
    data: dict[str, Any],
    task_type: str | None,
    frame_id: str,
    index: FrameIndex,
    frame_rate: float = DEFAULT_FRAME_RATE,
) -> dict[str, Any]:
    """One Label Studio annotation's results -> the validated canonical payload of its task;
    :class:`LabelStudioImportError` says why it cannot be converted."""
    try:
        payload = _canonical_payload(results, data, task_type, frame_id, index, frame_rate)
        validate_payload(str(task_type), payload)
    except LabelStudioImportError:
        raise
    except PayloadError as error:
        raise LabelStudioImportError(str(error)) from error
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        # An export edited by hand or by another tool: report it on this annotation, import the rest.
        raise LabelStudioImportError(f"malformed result ({type(error).__name__}: {error})") from error
    return payload


def _canonical_payload(
    results: list[dict[str, Any]],
    data: dict[str, Any],
    task_type: str | None,
    frame_id: str,
    index: FrameIndex,
    frame_rate: float,
) -> dict[str, Any]:
    if task_type not in TASK_ORDER:
        raise LabelStudioImportError(
            f"task type {task_type!r} is not one of {list(TASK_ORDER)}; the task's data needs a 'task' field "
            f"(as exported by to_label_studio_tasks) or pass task= to the import"
        )
    if frame_id not in index.sizes:
        raise LabelStudioImportError(
            f"frame {frame_id!r} is not in the frames manifest; import with the frames manifest of the exported batch"
        )
    parsed = _Parsed(results, task_type)
    width, height = index.sizes[frame_id]
    if task_type == Task.OCR:
        return ocr_payload(parsed, width, height)
    if task_type == Task.GUI_ACTION:
        return gui_payload(parsed, width, height, str(data.get("requested_instruction") or ""))
    if task_type == Task.SPATIAL:
        return spatial_payload(parsed, width, height)
    if task_type == Task.IMAGE_TO_CODE:
        return image_to_code_payload(parsed, width, height)
    upload_id = index.owner[frame_id][0]
    times, frame_ids = index.videos.get(upload_id, ([], []))
    return video_event_payload(parsed, frame_rate, times, frame_ids)
