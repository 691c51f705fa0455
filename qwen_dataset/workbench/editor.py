"""The bridge between work items and the editors: the Label Studio editor for pictures, the
timeline editor for video events.

Canonical payloads become Label Studio results with
:func:`qwen_dataset.exporters.label_studio.label_studio_task` (boxes in pixels -> percent), and
what the editor sends back becomes a canonical payload with
:func:`~qwen_dataset.exporters.label_studio.from_label_studio_export`, so the workbench, the Label
Studio export file and the import of a Label Studio project agree by construction. The pinned
Label Studio editor (1.4.0) has no timeline, so ``video_event`` items go to the workbench's own
timeline editor, whose results are the events themselves (:mod:`.video`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from qwen_dataset.db.models import WorkItem
from qwen_dataset.exporters.label_studio.config import LS_TEMPLATE_VERSION, LabelStudioImportError, labeling_config
from qwen_dataset.exporters.label_studio.export import label_studio_task
from qwen_dataset.exporters.label_studio.importer import FrameIndex, canonical_payload
from qwen_dataset.exporters.stream import ExportAnnotation
from qwen_dataset.payloads import TASK_ORDER
from qwen_dataset.prelabel.classical.spatial import fill_relations
from qwen_dataset.records import Task, dump_payload, load_payload
from qwen_dataset.workbench import video

#: Tasks the workbench edits: every task (video events on the timeline editor).
EDITABLE_TASKS: tuple[str, ...] = TASK_ORDER
MAX_RESULTS = 5000  # more results than any frame needs: a bigger request is a mistake or an attack
#: The longest text a field may hold: a line, a label, an instruction, an event's description...
MAX_TEXT_CHARS = 10_000
#: ...except a generated page's HTML, which holds a whole screen.
MAX_TEXT_CHARS_BY_FIELD = {"html": 500_000}


class EditorError(ValueError):
    """What the editor sent cannot become a canonical payload; the message says why."""


def config_for(task: str) -> str:
    """The labeling config the workbench's editor loads for ``task`` (a generated page's HTML is
    edited in the workbench's code editor, so its text box is left out)."""
    return labeling_config(task, html_text_box=False)


def to_results(item: WorkItem, payload_json: str, author: str = "", template_version: str = "") -> list[dict[str, Any]]:
    """A canonical payload of ``item``'s frame as the editor's results: Label Studio results
    (percent boxes), or for a video the events."""
    if item.task == Task.VIDEO_EVENT:
        return video.editor_events(load_payload(payload_json))
    annotation = ExportAnnotation(
        annotation_id="",
        frame_id=item.frame_id,
        upload_id=item.upload_id,
        task=item.task,
        source="",
        author=author,
        template_version=template_version,
        created_at="",
        width=item.width,
        height=item.height,
        payload=load_payload(payload_json) or {},
    )
    task = label_studio_task(annotation, image_url=lambda _frame_id: "")
    return task["predictions"][0]["result"]


def task_data(item: WorkItem) -> dict[str, Any]:
    """The ``data`` of the item's Label Studio task, minus the image URL."""
    data: dict[str, Any] = {
        "frame_id": item.frame_id,
        "upload_id": item.upload_id,
        "task": item.task,
        "width": item.width,
        "height": item.height,
    }
    if item.task == Task.GUI_ACTION:
        data["requested_instruction"] = (load_payload(item.ai_payload) or {}).get("requested_instruction", "")
    return data


@dataclasses.dataclass(frozen=True)
class Converted:
    payload: str  # canonical JSON
    template_version: str


def from_results(item: WorkItem, results: Any) -> Converted:
    """Label Studio results of ``item`` -> canonical payload; :class:`EditorError` when impossible."""
    if not isinstance(results, list) or not all(isinstance(result, dict) for result in results):
        raise EditorError("'result' must be the editor's list of result objects")
    if len(results) > MAX_RESULTS:
        raise EditorError(f"'result' has {len(results)} entries; at most {MAX_RESULTS} are accepted")
    if item.task == Task.VIDEO_EVENT:
        try:
            events = video.payload_from_events(video.VideoContext.from_json(item.context), results)
        except video.EventsInvalid as error:
            raise EditorError(str(error)) from None
        check_text_sizes(events)
        return Converted(dump_payload(events), video.EDITOR_VERSION)
    # The save path: one still frame, indexed directly (no manifest table per request).
    frame = FrameIndex.of_picture(item.frame_id, item.upload_id, item.batch, item.width, item.height)
    try:
        payload = canonical_payload(results, task_data(item), item.task, item.frame_id, frame)
    except LabelStudioImportError as error:
        raise EditorError(str(error)) from None
    check_text_sizes(payload)
    return Converted(dump_payload(payload), LS_TEMPLATE_VERSION)


def suggest_relations(item: WorkItem, results: Any) -> list[dict[str, Any]]:
    """The editor's spatial results with relations, depth order and occlusion flags filled in for
    what the annotator has not set yet (:func:`qwen_dataset.prelabel.classical.spatial.fill_relations`:
    the default engine's own rules, so what the workbench proposes is what pre-annotation does)."""
    if item.task != Task.SPATIAL:
        raise EditorError(f"relations are suggested for spatial items only, not {item.task}")
    converted = from_results(item, results)
    filled = fill_relations(load_payload(converted.payload))
    return to_results(item, dump_payload(filled))


def check_text_sizes(payload: Any) -> None:
    """:class:`EditorError` naming the first text of ``payload`` over its field's limit."""
    stack: list[tuple[str, str, Any]] = [("$", "", payload)]
    while stack:
        path, field, value = stack.pop()
        if isinstance(value, str):
            limit = MAX_TEXT_CHARS_BY_FIELD.get(field, MAX_TEXT_CHARS)
            if len(value) > limit:
                raise EditorError(
                    f"{path} has {len(value):,} characters, more than the {limit:,} a {field or 'text'} may hold; "
                    "shorten it (or split it over several regions)"
                )
        elif isinstance(value, dict):
            stack.extend((f"{path}.{key}", str(key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", field, item) for index, item in enumerate(value))
