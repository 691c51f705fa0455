"""Label Studio: labeling configs, tasks with predictions, and the import of Label Studio exports.

One converter used both ways, so what the review workbench loads into Label Studio and what it
reads back agree by construction:

* :func:`labeling_config` - the XML labeling config of each task type;
* :func:`to_label_studio_tasks` / :func:`export_label_studio` - canonical annotations -> Label
  Studio tasks (``{"data": {...}, "predictions": [{"model_version", "score", "result"}]}``);
* :func:`from_label_studio_export` - a Label Studio JSON export (tasks with ``annotations``) ->
  annotation records with canonical payloads.

Label Studio's result format (labelstud.io/guide/task_format, /guide/predictions): every
result has ``from_name`` / ``to_name`` / ``type`` naming a control tag of the config, the object
it labels and the control's type; image regions give ``value.x``, ``y``, ``width``, ``height``
in percent of the image (0-100), ``rotation`` in degrees about the top-left corner, and
``original_width`` / ``original_height`` in pixels. Results of per-region controls
(``perRegion="true"``: a region's transcription, label text, choices, number) share the region's
``id``. Relations are ``{"type": "relation", "from_id", "to_id", "direction", "labels"}``.
Video timeline regions (``timelinelabels``) give ``value.ranges`` ``[{"start", "end"}]`` in
1-based frame numbers at the ``<Video frameRate>`` of the config.

Per task (region ids are stable: ``r<i>``, ``e<i>``, ``o<i>``, ``n<i>``, ``v<i>`` = item ``i``):

=============== =============================================================================
ocr             RectangleLabels ``bbox`` (label ``text``) + per-region TextArea
                ``transcription``, TextArea ``language``, Choices ``font_style``; the
                confidence is the rectangle's ``score``; result order = reading order
gui_action      RectangleLabels ``element`` (one label per role) + per-region TextArea
                ``element_text``; TextArea ``instruction``; TextArea ``actions`` holding the
                action sequence in the Action DSL (:mod:`.action_dsl`) with targets naming
                element regions (``#e0``); the requested instruction travels in ``data``
spatial         Rectangle ``object`` + per-region TextArea ``label``, Choices ``occluded``,
                Number ``depth`` (rank in the depth order, 0 = nearest); Relations with the
                seven predicates (one relation per object pair, its labels the predicates)
image_to_code   RectangleLabels ``block`` (one label per layout role) + per-region TextArea
                ``tag``; Relations ``child_of`` from each block to its parent; TextArea ``html``
video_event     Video ``video`` + TimelineLabels ``event`` + per-region TextArea
                ``description``; times are frame-accurate at the config's frame rate
=============== =============================================================================
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pandas as pd

from qwen_dataset.exporters import action_dsl
from qwen_dataset.exporters.coco import template_roles
from qwen_dataset.exporters.payloads import (
    AnnotationStream,
    BoxChecker,
    ExportAnnotation,
    check_boxes,
    dump_json,
    frame_size_index,
    iter_layout,
)
from qwen_dataset.geometry import clip_box, from_label_studio, is_valid_box, to_label_studio
from qwen_dataset.prelabel.templates import TASK_ORDER
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
from qwen_dataset.storage import atomic_writer
from qwen_dataset.video_events import frame_ids_for_event

#: ``template_version`` of records imported from Label Studio (bump when the configs change).
LS_TEMPLATE_VERSION = "label-studio-1.0"
#: Frame rate of the ``<Video>`` tag: timeline ranges are frame numbers at this rate.
DEFAULT_FRAME_RATE = 25.0

FONT_STYLES = ("regular", "bold", "italic", "handwritten", "monospace", "decorative")
SPATIAL_PREDICATES = ("left_of", "right_of", "above", "below", "in_front_of", "behind", "occludes")
CHILD_OF = "child_of"
OCR_LABEL = "text"
OCCLUDED = "occluded"
EVENT_LABEL = "event"


class LabelStudioImportError(ValueError):
    """A Label Studio annotation that cannot become a canonical payload; the message says why."""


# --------------------------------------------------------------------------------------------
# Labeling configs


def _labels(tag: str, name: str, to_name: str, values: Iterable[str], extra: str = "") -> str:
    options = "".join(f"\n    <Label value={quoteattr(value)}/>" for value in values)
    return f'  <{tag} name="{name}" toName="{to_name}"{extra}>{options}\n  </{tag}>'


def _choices(name: str, values: Iterable[str], choice: str) -> str:
    options = "".join(f"\n    <Choice value={quoteattr(value)}/>" for value in values)
    return f'  <Choices name="{name}" toName="image" perRegion="true" choice="{choice}">{options}\n  </Choices>'


def _region_text(name: str, placeholder: str, rows: int = 1, required: bool = False, to_name: str = "image") -> str:
    required_attr = ' required="true"' if required else ""
    return (
        f'  <TextArea name="{name}" toName="{to_name}" perRegion="true" editable="true" rows="{rows}" '
        f'maxSubmissions="1" displayMode="region-list"{required_attr} placeholder={quoteattr(placeholder)}/>'
    )


def _task_text(name: str, header: str, rows: int) -> str:
    return (
        f"  <Header value={quoteattr(header)}/>\n"
        f'  <TextArea name="{name}" toName="image" editable="true" rows="{rows}" maxSubmissions="1"/>'
    )


def _relations(values: Iterable[str]) -> str:
    options = "".join(f"\n    <Relation value={quoteattr(value)}/>" for value in values)
    return f"  <Relations>{options}\n  </Relations>"


_IMAGE = '  <Image name="image" value="$image" zoom="true" zoomControl="true"/>'
_DSL_HINT = (
    "Actions, one per line (Action DSL): CLICK #e0 @(x,y) | TYPE #e1 \"text\" | SCROLL down 3 | "
    "KEY \"Enter\" | WAIT 1.5 | DRAG #e2 @(x,y) -> @(x,y); #e<i> names an element region, points in pixels"
)


def check_frame_rate(frame_rate: float) -> None:
    if isinstance(frame_rate, bool) or not isinstance(frame_rate, (int, float)) or not 0 < frame_rate < math.inf:
        raise ValueError(f"frame_rate must be a positive number of frames per second (the <Video frameRate>), got {frame_rate!r}")


def labeling_config(task: str, *, frame_rate: float = DEFAULT_FRAME_RATE) -> str:
    """The Label Studio labeling config (XML) for ``task``; its control names match the results."""
    if task == Task.OCR:
        parts = [
            _IMAGE,
            _labels("RectangleLabels", "bbox", "image", [OCR_LABEL]),
            _region_text("transcription", "Text of this line, exactly as written", rows=2, required=True),
            _region_text("language", "Language (ISO 639-1: en, zh, ...)"),
            _choices("font_style", FONT_STYLES, "single"),
        ]
    elif task == Task.GUI_ACTION:
        parts = [
            _IMAGE,
            _labels("RectangleLabels", "element", "image", template_roles(task) or ["other"]),
            _region_text("element_text", "Visible text or accessible name"),
            _task_text("instruction", "Instruction the actions carry out", rows=2),
            _task_text("actions", _DSL_HINT, rows=8),
        ]
    elif task == Task.SPATIAL:
        parts = [
            _IMAGE,
            '  <Rectangle name="object" toName="image"/>',
            _region_text("label", "Short noun phrase naming the object", required=True),
            _choices("occluded", [OCCLUDED], "multiple"),
            '  <Number name="depth" toName="image" perRegion="true" min="0"/>',
            _relations(SPATIAL_PREDICATES),
        ]
    elif task == Task.IMAGE_TO_CODE:
        parts = [
            _IMAGE,
            _labels("RectangleLabels", "block", "image", template_roles(task) or ["other"]),
            _region_text("tag", "HTML tag rendering this block"),
            _relations([CHILD_OF]),
            _task_text("html", "HTML (self-contained, inline CSS)", rows=20),
        ]
    elif task == Task.VIDEO_EVENT:
        check_frame_rate(frame_rate)
        parts = [
            f'  <Video name="video" value="$video" frameRate="{frame_rate:g}" timelineHeight="120"/>',
            _labels("TimelineLabels", "event", "video", [EVENT_LABEL]),
            _region_text("description", "One sentence: what happens", rows=2, required=True, to_name="video"),
        ]
    else:
        raise ValueError(f"unknown task {task!r}: the tasks are {list(TASK_ORDER)}")
    return "<View>\n" + "\n".join(parts) + "\n</View>\n"


# --------------------------------------------------------------------------------------------
# Canonical -> Label Studio


class _Results:
    """Builds the result list of one image annotation."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.items: list[dict[str, Any]] = []

    def rect(self, box: list[float]) -> dict[str, float]:
        return {**to_label_studio(box, self.width, self.height), "rotation": 0}

    def region(self, region_id: str, from_name: str, kind: str, value: dict[str, Any], **extra: Any) -> None:
        self.items.append({
            "id": region_id, "from_name": from_name, "to_name": "image", "type": kind,
            "original_width": self.width, "original_height": self.height, "image_rotation": 0, "value": value, **extra,
        })

    def task_text(self, from_name: str, text: str) -> None:
        self.items.append(
            {"id": from_name, "from_name": from_name, "to_name": "image", "type": "textarea", "value": {"text": [text]}}
        )

    def relation(self, from_id: str, to_id: str, labels: list[str]) -> None:
        self.items.append({"from_id": from_id, "to_id": to_id, "type": "relation", "direction": "right", "labels": labels})


def ocr_results(payload: dict[str, Any], width: int, height: int) -> list[dict[str, Any]]:
    results = _Results(width, height)
    for index, region in enumerate(payload.get("regions") or []):
        region_id, rect = f"r{index}", results.rect(region["bbox"])
        score = {"score": region["confidence"]} if region.get("confidence") is not None else {}
        results.region(region_id, "bbox", "rectanglelabels", {**rect, "rectanglelabels": [OCR_LABEL]}, **score)
        results.region(region_id, "transcription", "textarea", {**rect, "text": [region.get("text", "")]})
        if region.get("language"):
            results.region(region_id, "language", "textarea", {**rect, "text": [region["language"]]})
        if region.get("font_style"):
            results.region(region_id, "font_style", "choices", {**rect, "choices": [region["font_style"]]})
    return results.items


def gui_results(payload: dict[str, Any], width: int, height: int) -> list[dict[str, Any]]:
    results = _Results(width, height)
    elements = payload.get("elements") or []
    for index, element in enumerate(elements):
        region_id, rect = f"e{index}", results.rect(element["bbox"])
        results.region(region_id, "element", "rectanglelabels", {**rect, "rectanglelabels": [element.get("role", "other")]})
        if element.get("text"):
            results.region(region_id, "element_text", "textarea", {**rect, "text": [element["text"]]})
    results.task_text("instruction", payload.get("instruction", ""))
    actions = [_with_region_target(action, len(elements)) for action in payload.get("actions") or []]
    results.task_text("actions", action_dsl.write(actions).rstrip("\n"))
    return results.items


def _with_region_target(action: dict[str, Any], element_count: int) -> dict[str, Any]:
    # In Label Studio an element index would go stale as soon as a reviewer deletes a region;
    # the region id does not.
    target = action.get("target")
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < element_count:
        return {**action, "target": f"e{target}"}
    return dict(action)


def spatial_results(payload: dict[str, Any], width: int, height: int) -> list[dict[str, Any]]:
    results = _Results(width, height)
    depth_rank = {index: rank for rank, index in enumerate(payload.get("depth_order") or [])}
    for index, item in enumerate(payload.get("objects") or []):
        region_id, rect = f"o{index}", results.rect(item["bbox"])
        results.region(region_id, "object", "rectangle", rect)
        results.region(region_id, "label", "textarea", {**rect, "text": [item.get("label", "")]})
        if item.get("occluded"):
            results.region(region_id, "occluded", "choices", {**rect, "choices": [OCCLUDED]})
        if index in depth_rank:
            results.region(region_id, "depth", "number", {**rect, "number": depth_rank[index]})
    # Label Studio keeps one relation per ordered pair of regions; its labels carry the predicates.
    pairs: dict[tuple[int, int], list[str]] = {}
    for relation in payload.get("relations") or []:
        pairs.setdefault((relation["subject"], relation["object"]), []).append(relation["predicate"])
    for (subject, obj), predicates in pairs.items():
        results.relation(f"o{subject}", f"o{obj}", predicates)
    return results.items


def image_to_code_results(payload: dict[str, Any], width: int, height: int) -> list[dict[str, Any]]:
    results = _Results(width, height)
    links = []
    for index, parent, _, node in iter_layout(payload.get("layout")):
        region_id, rect = f"n{index}", results.rect(node["bbox"])
        results.region(region_id, "block", "rectanglelabels", {**rect, "rectanglelabels": [node.get("role", "other")]})
        if node.get("tag"):
            results.region(region_id, "tag", "textarea", {**rect, "text": [node["tag"]]})
        if parent is not None:
            links.append((region_id, f"n{parent}"))
    for child, parent in links:
        results.relation(child, parent, [CHILD_OF])
    results.task_text("html", payload.get("html", ""))
    return results.items


def seconds_to_frame(seconds: float, frame_rate: float) -> int:
    """1-based frame number of the frame nearest to ``seconds`` (halves round up, not to even)."""
    return math.floor(float(seconds) * frame_rate + 0.5) + 1


def frame_to_seconds(frame: float, frame_rate: float) -> float:
    return (float(frame) - 1.0) / frame_rate


def video_event_results(payload: dict[str, Any], frame_rate: float) -> list[dict[str, Any]]:
    items = []
    for index, event in enumerate(payload.get("events") or []):
        region_id = f"v{index}"
        ranges = [{"start": seconds_to_frame(event["start"], frame_rate), "end": seconds_to_frame(event["end"], frame_rate)}]
        common = {"id": region_id, "to_name": "video"}
        description = event.get("description", "")
        items.append({**common, "from_name": "event", "type": "timelinelabels",
                      "value": {"ranges": ranges, "timelinelabels": [EVENT_LABEL]}})
        items.append({**common, "from_name": "description", "type": "textarea",
                      "value": {"ranges": ranges, "text": [description]}})
    return items


def _score(annotation: ExportAnnotation) -> float | None:
    """Mean region confidence (OCR engines report one); ``None`` when no confidence is known."""
    if annotation.task != Task.OCR:
        return None
    values = [region["confidence"] for region in annotation.payload.get("regions") or [] if region.get("confidence") is not None]
    return float(sum(values) / len(values)) if values else None


def label_studio_task(
    annotation: ExportAnnotation,
    image_url: Callable[[str], str],
    *,
    video_url: Callable[[str], str] | None = None,
    frame_rate: float = DEFAULT_FRAME_RATE,
) -> dict[str, Any]:
    """One checked annotation as a Label Studio task whose prediction is the annotation."""
    task, payload = annotation.task, annotation.payload
    data: dict[str, Any] = {
        "frame_id": annotation.frame_id, "upload_id": annotation.upload_id, "task": task,
        "annotation_id": annotation.annotation_id,
    }
    if task == Task.VIDEO_EVENT:
        if video_url is None:
            raise ValueError("video_event tasks show the video itself: pass video_url(upload_id) -> URL of the video file")
        data["video"] = video_url(annotation.upload_id)
        result = video_event_results(payload, frame_rate)
    else:
        data["image"] = image_url(annotation.frame_id)
        builder = {
            Task.OCR.value: ocr_results, Task.GUI_ACTION.value: gui_results, Task.SPATIAL.value: spatial_results,
            Task.IMAGE_TO_CODE.value: image_to_code_results,
        }[task]
        result = builder(payload, annotation.width, annotation.height)
    if task == Task.GUI_ACTION:
        data["requested_instruction"] = payload.get("requested_instruction", "")
    prediction = {
        "model_version": f"{annotation.author}@{annotation.template_version}", "score": _score(annotation), "result": result,
    }
    return {"data": data, "predictions": [prediction]}


def iter_label_studio_tasks(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    image_url: Callable[[str], str],
    *,
    task: str = Task.OCR.value,
    video_url: Callable[[str], str] | None = None,
    frame_rate: float = DEFAULT_FRAME_RATE,
) -> Iterator[dict[str, Any]]:
    """Label Studio tasks of the final ``task`` annotations, one at a time, by ``frame_id``."""
    if task not in TASK_ORDER:
        raise ValueError(f"unknown task {task!r}: the tasks are {list(TASK_ORDER)}")
    if task == Task.VIDEO_EVENT and video_url is None:
        raise ValueError("video_event tasks show the video itself: pass video_url(upload_id) -> URL of the video file")
    check_frame_rate(frame_rate)
    stream = AnnotationStream(annotations, frames, task)
    return _tasks(stream, image_url, video_url, frame_rate)


def _tasks(stream: AnnotationStream, image_url: Callable[[str], str], video_url: Callable[[str], str] | None,
           frame_rate: float) -> Iterator[dict[str, Any]]:
    checker = BoxChecker()
    for annotation in stream:
        check_boxes(annotation, checker)
        yield label_studio_task(annotation, image_url, video_url=video_url, frame_rate=frame_rate)
    checker.raise_if_any()


def to_label_studio_tasks(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    image_url: Callable[[str], str],
    *,
    task: str = Task.OCR.value,
    video_url: Callable[[str], str] | None = None,
    frame_rate: float = DEFAULT_FRAME_RATE,
) -> list[dict[str, Any]]:
    """Label Studio tasks (``data`` + ``predictions``) of the final ``task`` annotations.

    ``image_url(frame_id)`` is the URL Label Studio loads the frame from; ``video_url(upload_id)``
    the video's (``video_event`` only). Each task's ``data`` also carries ``frame_id``,
    ``upload_id``, ``task`` and ``annotation_id``, which :func:`from_label_studio_export` uses
    to map the reviewed results back. For large batches use :func:`export_label_studio`, which
    streams to a file.
    """
    return list(iter_label_studio_tasks(annotations, frames, image_url, task=task, video_url=video_url, frame_rate=frame_rate))


def export_label_studio(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    out_path: Path,
    image_url: Callable[[str], str],
    *,
    task: str = Task.OCR.value,
    video_url: Callable[[str], str] | None = None,
    frame_rate: float = DEFAULT_FRAME_RATE,
) -> int:
    """Stream the tasks of :func:`to_label_studio_tasks` into a JSON array file (Label Studio's
    import format) atomically; returns the task count."""
    tasks = iter_label_studio_tasks(annotations, frames, image_url, task=task, video_url=video_url, frame_rate=frame_rate)
    count = 0
    with atomic_writer(Path(out_path), "wb") as handle:
        handle.write(b"[")
        for item in tasks:
            handle.write((b",\n" if count else b"\n") + dump_json(item).encode("utf-8"))
            count += 1
        handle.write(b"\n]\n" if count else b"]\n")
    return count


# --------------------------------------------------------------------------------------------
# Label Studio -> canonical


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
    Task.OCR.value: "bbox", Task.GUI_ACTION.value: "element", Task.SPATIAL.value: "object",
    Task.IMAGE_TO_CODE.value: "block", Task.VIDEO_EVENT.value: "event",
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
            result.get("id") for result in results
            if result.get("type") in _SHAPES and result.get("from_name") == shape_control
        }
        for result in results:
            kind = result.get("type", "")
            value = result.get("value") or {}
            region_id = result.get("id")
            from_name = result.get("from_name", "")
            if kind == "relation":
                self._relation(result)
            elif region_id in shape_ids:
                region = self.regions.setdefault(region_id, _Region(region_id))
                if kind in _SHAPES and from_name == shape_control:
                    region.kind, region.value = kind, value
                    labels = value.get(kind) if kind != "rectangle" else None
                    region.label = labels[0] if labels else ""
                    region.score = result.get("score")
                else:
                    region.controls[from_name] = value
            elif _is_per_region(value):
                raise LabelStudioImportError(f"result {region_id!r} ({from_name}) belongs to no {shape_control!r} region")
            elif kind == "textarea":
                self.texts[from_name] = "\n".join(str(part) for part in value.get("text") or [])

    def _relation(self, result: dict[str, Any]) -> None:
        source, target = result.get("from_id"), result.get("to_id")
        if result.get("direction") == "left":  # the arrow points from to_id to from_id
            source, target = target, source
        self.relations.append((source, target, list(result.get("labels") or [])))

    def shapes(self) -> list[_Region]:
        return list(self.regions.values())


def _is_per_region(value: dict[str, Any]) -> bool:
    # A per-region control's result repeats the region's geometry; a per-task one has none.
    return any(key in value for key in ("x", "ranges"))


def _pixel_box(region: _Region, width: int, height: int, where: str) -> list[float]:
    value = region.value
    try:
        box = from_label_studio(value, width, height)
        rotation = float(value.get("rotation") or 0.0)
    except (KeyError, TypeError, ValueError) as error:
        raise LabelStudioImportError(f"{where}: not a rectangle value ({error})") from error
    if rotation:
        box = _rotated_envelope(box, rotation)
    clipped = clip_box(box, width, height)
    if not is_valid_box(clipped, width, height):
        raise LabelStudioImportError(f"{where}: the box {box} is empty or outside the {width}x{height} frame")
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
        regions.append({
            "bbox": _pixel_box(region, width, height, f"region {region.region_id}"),
            "text": region.text("transcription") or "",
            "confidence": region.score,
            "language": region.text("language") or "",
            "font_style": (region.choices("font_style") or [None])[0],
            "reading_order": order,
        })
    return {"regions": regions}


def gui_payload(parsed: _Parsed, width: int, height: int, requested_instruction: str) -> dict[str, Any]:
    shapes = parsed.shapes()
    index_of = {region.region_id: index for index, region in enumerate(shapes)}
    elements = [
        {"bbox": _pixel_box(region, width, height, f"element {region.region_id}"), "role": region.label or "other",
         "text": region.text("element_text") or ""}
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
        objects.append({
            "bbox": _pixel_box(region, width, height, f"object {region.region_id}"),
            "label": region.text("label") or "",
            "occluded": OCCLUDED in region.choices("occluded"),
        })
        depth = region.controls.get("depth", {}).get("number")
        if depth is not None:
            ranked.append((float(depth), index))
    relations = []
    for source, target, labels in parsed.relations:
        if source not in index_of or target not in index_of:
            raise LabelStudioImportError(f"a relation links {source} -> {target}, which are not both object regions")
        for predicate in labels:
            if predicate not in SPATIAL_PREDICATES:
                raise LabelStudioImportError(f"relation label {predicate!r} is not one of {list(SPATIAL_PREDICATES)}")
            relations.append({"subject": index_of[source], "predicate": predicate, "object": index_of[target]})
    return {"objects": objects, "relations": relations, "depth_order": [index for _, index in sorted(ranked)]}


def image_to_code_payload(parsed: _Parsed, width: int, height: int) -> dict[str, Any]:
    shapes = parsed.shapes()
    index_of = {region.region_id: index for index, region in enumerate(shapes)}
    nodes = [
        {"tag": region.text("tag") or "", "role": region.label or "other",
         "bbox": _pixel_box(region, width, height, f"block {region.region_id}"), "children": []}
        for region in shapes
    ]
    parents: dict[int, int] = {}
    for source, target, labels in parsed.relations:
        if CHILD_OF not in labels:
            continue
        if source not in index_of or target not in index_of:
            raise LabelStudioImportError(f"a child_of relation links {source} -> {target}, which are not both block regions")
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
    reached = sum(1 for _ in iter_layout(nodes[roots[0]])) if nodes else 0
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
        events.append({
            "start": start, "end": end, "description": (region.text("description") or "").strip(),
            "frame_ids": frame_ids_for_event(start, end, times, frame_ids),
        })
    return {"events": events}


class _FrameIndex:
    """What an import needs to know about frames: sizes, upload and batch, a video's sampled frames."""

    def __init__(self, frames: pd.DataFrame) -> None:
        self.sizes = frame_size_index(frames)
        self.owner = {
            frame_id: (upload_id, batch)
            for frame_id, upload_id, batch in zip(
                frames["frame_id"].tolist(), frames["upload_id"].tolist(), frames["batch"].tolist(), strict=True
            )
        }
        video = frames[frames["kind"] == FrameKind.VIDEO_FRAME.value].sort_values(["upload_id", "t", "frame_id"], kind="stable")
        self.videos: dict[str, tuple[list[float], list[str]]] = {}
        columns = (video["upload_id"].tolist(), video["frame_id"].tolist(), video["t"].tolist())
        for upload_id, frame_id, t in zip(*columns, strict=True):
            if not pd.isna(t):
                times, ids = self.videos.setdefault(upload_id, ([], []))
                times.append(float(t))
                ids.append(frame_id)


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
    frames: pd.DataFrame,
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
    ``annotation_id`` (same frame, task, source and author) keep the last one.
    """
    check_frame_rate(frame_rate)
    index = _FrameIndex(frames)
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
    completion: dict[str, Any], source: str, data: dict[str, Any], task_type: str | None, frame_id: str,
    index: _FrameIndex, frame_rate: float,
) -> dict[str, Any]:
    author = _author(completion, source)
    upload_id, batch = index.owner.get(frame_id, (str(data.get("upload_id") or ""), ""))
    record = AnnotationRecord(
        annotation_id=annotation_id_for(frame_id, str(task_type or ""), source, author),
        frame_id=frame_id, upload_id=upload_id, batch=batch, task=str(task_type or ""), source=source, author=author,
        template_version=LS_TEMPLATE_VERSION,
        created_at=str(completion.get("updated_at") or completion.get("created_at") or utc_now()),
        status=AnnotationStatus.OK.value, error="", payload="", reviewed=False,
    )
    try:
        payload = _canonical_payload(completion.get("result") or [], data, task_type, frame_id, index, frame_rate)
    except LabelStudioImportError as error:
        reason = str(error)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        # An export edited by hand or by another tool: report it on this annotation, import the rest.
        reason = f"malformed result ({type(error).__name__}: {error})"
    else:
        return dataclasses.asdict(dataclasses.replace(record, payload=dump_payload(payload)))
    failed = dataclasses.replace(record, status=AnnotationStatus.FAILED.value, error=f"label_studio_import: {reason}")
    return dataclasses.asdict(failed)


def _canonical_payload(
    results: list[dict[str, Any]], data: dict[str, Any], task_type: str | None, frame_id: str, index: _FrameIndex,
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
