"""Canonical annotations -> Label Studio tasks whose predictions are the annotations
(``{"data": {...}, "predictions": [{"model_version", "score", "result"}]}``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd

from qwen_dataset.exporters import action_dsl
from qwen_dataset.exporters.label_studio.config import (
    CHILD_OF,
    DEFAULT_FRAME_RATE,
    EVENT_LABEL,
    OBJECT_LABEL,
    OCCLUDED,
    OCR_LABEL,
    check_frame_rate,
    seconds_to_frame,
)
from qwen_dataset.exporters.stream import AnnotationStream, BoxChecker, ExportAnnotation, dumps, gc_paused
from qwen_dataset.payloads import TASK_ORDER
from qwen_dataset.records import Task
from qwen_dataset.store.paths import atomic_writer


class _Results:
    """Builds the result list of one image annotation; its boxes come from the chunk's geometry."""

    def __init__(self, annotation: ExportAnnotation) -> None:
        self.width, self.height = annotation.width, annotation.height
        self.rects = annotation.label_studio_boxes()
        self.items: list[dict[str, Any]] = []

    def region(self, position: int, region_id: str, from_name: str, kind: str, key: str, value: Any) -> dict[str, Any]:
        """One result of box ``position``: its rectangle in percent plus ``key: value`` (returned,
        for keys that follow, such as a score)."""
        x, y, width, height = self.rects[position]
        result = {
            "id": region_id,
            "from_name": from_name,
            "to_name": "image",
            "type": kind,
            "original_width": self.width,
            "original_height": self.height,
            "image_rotation": 0,
            "value": {"x": x, "y": y, "width": width, "height": height, "rotation": 0, key: value},
        }
        self.items.append(result)
        return result

    def task_text(self, from_name: str, text: str) -> None:
        self.items.append(
            {"id": from_name, "from_name": from_name, "to_name": "image", "type": "textarea", "value": {"text": [text]}}
        )

    def relation(self, from_id: str, to_id: str, labels: list[str]) -> None:
        self.items.append(
            {"from_id": from_id, "to_id": to_id, "type": "relation", "direction": "right", "labels": labels}
        )


def ocr_results(annotation: ExportAnnotation) -> list[dict[str, Any]]:
    results = _Results(annotation)
    for index, region, *_ in annotation.box_items():
        region_id = f"r{index}"
        box = results.region(index, region_id, "bbox", "rectanglelabels", "rectanglelabels", [OCR_LABEL])
        if region.get("confidence") is not None:
            box["score"] = region["confidence"]
        results.region(index, region_id, "transcription", "textarea", "text", [region.get("text", "")])
        if region.get("language"):
            results.region(index, region_id, "language", "textarea", "text", [region["language"]])
        if region.get("font_style"):
            results.region(index, region_id, "font_style", "choices", "choices", [region["font_style"]])
    return results.items


def gui_results(annotation: ExportAnnotation) -> list[dict[str, Any]]:
    results = _Results(annotation)
    payload = annotation.payload
    elements = [box.item for box in annotation.box_items()]
    for index, element in enumerate(elements):
        region_id = f"e{index}"
        results.region(
            index, region_id, "element", "rectanglelabels", "rectanglelabels", [element.get("role", "other")]
        )
        if element.get("text"):
            results.region(index, region_id, "element_text", "textarea", "text", [element["text"]])
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


def spatial_results(annotation: ExportAnnotation) -> list[dict[str, Any]]:
    results = _Results(annotation)
    payload = annotation.payload
    depth_rank = {index: rank for rank, index in enumerate(payload.get("depth_order") or [])}
    for index, item, *_ in annotation.box_items():
        region_id = f"o{index}"
        results.region(index, region_id, "object", "rectanglelabels", "rectanglelabels", [OBJECT_LABEL])
        results.region(index, region_id, "label", "textarea", "text", [item.get("label", "")])
        if item.get("occluded"):
            results.region(index, region_id, "occluded", "choices", "choices", [OCCLUDED])
        if index in depth_rank:
            results.region(index, region_id, "depth", "number", "number", depth_rank[index])
    # Label Studio keeps one relation per ordered pair of regions; its labels carry the predicates.
    pairs: dict[tuple[int, int], list[str]] = {}
    for relation in payload.get("relations") or []:
        pairs.setdefault((relation["subject"], relation["object"]), []).append(relation["predicate"])
    for (subject, obj), predicates in pairs.items():
        results.relation(f"o{subject}", f"o{obj}", predicates)
    return results.items


def image_to_code_results(annotation: ExportAnnotation) -> list[dict[str, Any]]:
    results = _Results(annotation)
    links = []
    for index, node, _, parent, _, _ in annotation.box_items():
        region_id = f"n{index}"
        results.region(index, region_id, "block", "rectanglelabels", "rectanglelabels", [node.get("role", "other")])
        if node.get("tag"):
            results.region(index, region_id, "tag", "textarea", "text", [node["tag"]])
        if parent is not None:
            links.append((region_id, f"n{parent}"))
    for child_id, parent_id in links:
        results.relation(child_id, parent_id, [CHILD_OF])
    results.task_text("html", annotation.payload.get("html", ""))
    return results.items


_IMAGE_RESULTS: dict[str, Callable[[ExportAnnotation], list[dict[str, Any]]]] = {
    Task.OCR.value: ocr_results,
    Task.GUI_ACTION.value: gui_results,
    Task.SPATIAL.value: spatial_results,
    Task.IMAGE_TO_CODE.value: image_to_code_results,
}


def video_event_results(payload: dict[str, Any], frame_rate: float) -> list[dict[str, Any]]:
    items = []
    for index, event in enumerate(payload.get("events") or []):
        region_id = f"v{index}"
        ranges = [
            {"start": seconds_to_frame(event["start"], frame_rate), "end": seconds_to_frame(event["end"], frame_rate)}
        ]
        common = {"id": region_id, "to_name": "video"}
        description = event.get("description", "")
        items.append(
            {
                **common,
                "from_name": "event",
                "type": "timelinelabels",
                "value": {"ranges": ranges, "timelinelabels": [EVENT_LABEL]},
            }
        )
        items.append(
            {
                **common,
                "from_name": "description",
                "type": "textarea",
                "value": {"ranges": ranges, "text": [description]},
            }
        )
    return items


def _score(annotation: ExportAnnotation) -> float | None:
    """Mean region confidence (OCR engines report one); ``None`` when no confidence is known."""
    if annotation.task != Task.OCR:
        return None
    values = [box.item["confidence"] for box in annotation.box_items() if box.item.get("confidence") is not None]
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
        "frame_id": annotation.frame_id,
        "upload_id": annotation.upload_id,
        "task": task,
        "annotation_id": annotation.annotation_id,
    }
    if task == Task.VIDEO_EVENT:
        if video_url is None:
            raise ValueError(
                "video_event tasks show the video itself: pass video_url(upload_id) -> URL of the video file"
            )
        data["video"] = video_url(annotation.upload_id)
        result = video_event_results(payload, frame_rate)
    else:
        data["image"] = image_url(annotation.frame_id)
        result = _IMAGE_RESULTS[task](annotation)
    if task == Task.GUI_ACTION:
        data["requested_instruction"] = payload.get("requested_instruction", "")
    prediction = {
        "model_version": f"{annotation.author}@{annotation.template_version}",
        "score": _score(annotation),
        "result": result,
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
    stream = _stream(annotations, frames, task, video_url, frame_rate)
    return _tasks(stream, image_url, video_url, frame_rate)


def _stream(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    task: str,
    video_url: Callable[[str], str] | None,
    frame_rate: float,
) -> AnnotationStream:
    """The annotations of ``task``, once the arguments are known to be usable."""
    if task not in TASK_ORDER:
        raise ValueError(f"unknown task {task!r}: the tasks are {list(TASK_ORDER)}")
    if task == Task.VIDEO_EVENT and video_url is None:
        raise ValueError("video_event tasks show the video itself: pass video_url(upload_id) -> URL of the video file")
    check_frame_rate(frame_rate)
    return AnnotationStream(annotations, frames, task)


def _tasks(
    stream: AnnotationStream, image_url: Callable[[str], str], video_url: Callable[[str], str] | None, frame_rate: float
) -> Iterator[dict[str, Any]]:
    checker = BoxChecker()
    for annotation in stream.checked(checker):
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
    return list(
        iter_label_studio_tasks(annotations, frames, image_url, task=task, video_url=video_url, frame_rate=frame_rate)
    )


class LabelStudioWriter:
    """Streams Label Studio tasks into an open binary handle as one JSON array, a task per line."""

    def __init__(
        self,
        handle: IO[bytes],
        image_url: Callable[[str], str],
        *,
        video_url: Callable[[str], str] | None = None,
        frame_rate: float = DEFAULT_FRAME_RATE,
    ) -> None:
        check_frame_rate(frame_rate)
        self._handle, self._image_url, self._video_url, self._frame_rate = handle, image_url, video_url, frame_rate
        self.count = 0
        handle.write(b"[")

    def add(self, annotation: ExportAnnotation) -> None:
        """One checked annotation as a task."""
        task = label_studio_task(annotation, self._image_url, video_url=self._video_url, frame_rate=self._frame_rate)
        self._handle.write((b",\n" if self.count else b"\n") + dumps(task))
        self.count += 1

    def close(self) -> int:
        self._handle.write(b"\n]\n" if self.count else b"]\n")
        return self.count


@gc_paused
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
    stream = _stream(annotations, frames, task, video_url, frame_rate)
    checker = BoxChecker()
    with atomic_writer(Path(out_path)) as handle:
        writer = LabelStudioWriter(handle, image_url, video_url=video_url, frame_rate=frame_rate)
        for annotation in stream.checked(checker):
            writer.add(annotation)
        checker.raise_if_any()
        return writer.close()
