"""Training samples in the conversation JSONL of Qwen3-VL's ``qwen-vl-finetune``, for every task.

One JSON object per line, one per annotated frame (for ``video_event``: per video)::

    {"image": ["<image_ref(frame_id)>"],
     "conversations": [
        {"from": "human", "value": "<image>\\n<prompt>"},
        {"from": "gpt", "value": "<answer: JSON text>"}]}

Rules of the format (Qwen3-VL ``qwen-vl-finetune/README.md``): ``image`` is a path or a list of
paths, ``video`` a video path; each ``<image>`` tag in a human turn stands for exactly one image,
in order, a ``<video>`` tag for the video, and no tag appears in an answer. ``image`` (and
``video``) is always written as a list, even for one picture: the loader accepts both, but
``datasets.load_dataset("json", data_files=[...])`` over the files of several tasks fails when a
key is a string in one file and a list in another.

Answers are Qwen3-VL's native JSON: boxes as ``bbox_2d`` ``[x1, y1, x2, y2]`` and points as
``point_2d`` ``[x, y]``, integers relative to the frame on the 0-1000 scale
(:func:`qwen_dataset.geometry.to_qwen_1000`, with the frame's own width and height). Per task:

=============== ======================================= ==============================================
task            prompt                                  answer
=============== ======================================= ==============================================
ocr             Qwen3-VL cookbook's line-level text     ``[{"bbox_2d", "text_content"}, ...]`` in
                spotting prompt (:data:`OCR_PROMPT`)    reading order
gui_action      the template prompt with the            ``{"elements": [{"bbox_2d", "role", "text"}],
                annotation's instruction                "instruction", "actions": [{"type",
                                                        "target", "point_2d", "end_point_2d",
                                                        "text", "direction"}]}``
spatial         the template prompt                     ``{"objects": [{"bbox_2d", "label",
                                                        "occluded"}], "relations", "depth_order"}``
image_to_code   the template prompt                     ``{"html", "layout": {"tag", "role",
                                                        "bbox_2d", "children"}}``
video_event     ``<video>`` + :data:`VIDEO_EVENT_PROMPT`  ``{"events": [{"start", "end",
                or, without a video file, the sampled   "description"}]}`` (seconds)
                frames as ``<t seconds><image>`` lines
                and the template prompt
=============== ======================================= ==============================================

The gui_action, spatial, image_to_code and video_event answers follow the templates' schemas, so a
model fine-tuned on them answers the prelabel prompts in the form the prelabel parser reads.
``box_style="compact"`` writes each ``bbox_2d`` as the string ``"<box>[x1,y1,x2,y2]</box>"``
(still 0-1000) instead of a JSON array; everything else is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd

from qwen_dataset.exporters.stream import (
    AnnotationStream,
    BoxChecker,
    ExportAnnotation,
    dump_json,
    dumps,
    encode_json_string,
    gc_paused,
)
from qwen_dataset.geometry import point_to_qwen_1000
from qwen_dataset.payloads import TASK_ORDER
from qwen_dataset.prelabel.templates import DEFAULT_GUI_INSTRUCTION, load_template
from qwen_dataset.records import FrameKind, Task
from qwen_dataset.store.paths import atomic_writer

# The line-level text-spotting prompt of Qwen3-VL's OCR cookbook.
OCR_PROMPT = "Spot all the text in the image with line-level, and output in JSON format."
IMAGE_TAG = "<image>"
VIDEO_TAG = "<video>"
BOX_STYLES = ("json", "compact")

#: The video_event prompt when the sample carries the video file itself (the template's prompt
#: speaks of sampled frames shown with their timestamps, which a ``<video>`` sample has not).
VIDEO_EVENT_PROMPT = (
    "List the distinct events that happen in this video. For each event give:\n"
    '- "start": the second at which it begins;\n'
    '- "end": the second at which it ends (not before "start");\n'
    '- "description": one sentence describing what happens.\n'
    'Answer with JSON only: {"events": [...]}. If nothing happens, answer {"events": []}.'
)

# Tag-like text read off a screenshot ("<image>" in HTML source, "<|im_end|>") must not reach the
# trainer as a media placeholder or a special token. Escaping "<" as \u003c inside the answer's
# JSON strings hides it, and json.loads of the answer still returns the exact text.
_ESCAPES = {"<image>": "\\u003cimage>", "<video>": "\\u003cvideo>", "<|": "\\u003c|"}
# A prompt is plain text, not JSON: the same tags inside it (a GUI instruction may hold anything)
# are broken up so the trainer's placeholder split cannot see them.
_PROMPT_DEFUSE = {"<image>": "<image >", "<video>": "<video >", "<|": "< |"}


def _escape_tags(answer: str) -> str:
    for tag, escaped in _ESCAPES.items():
        answer = answer.replace(tag, escaped)
    return answer


def defuse_prompt(prompt: str) -> str:
    """``prompt`` with media placeholders and special-token openers broken up (``<image >``)."""
    for tag, defused in _PROMPT_DEFUSE.items():
        prompt = prompt.replace(tag, defused)
    return prompt


def dump_answer(answer: Any) -> str:
    """An answer object as the assistant turn's text: compact JSON, tags escaped."""
    return _escape_tags(dump_json(answer))


# --------------------------------------------------------------------------------------------
# Answers


def _boxes(annotation: ExportAnnotation, box_style: str) -> list[Any]:
    """The annotation's boxes on the 0-1000 scale, in :func:`iter_boxes` order, as ``box_style`` writes them."""
    coords = annotation.qwen_boxes()
    if box_style == "json":
        return coords
    return [f"<box>[{x1},{y1},{x2},{y2}]</box>" for x1, y1, x2, y2 in coords]


def _ocr_answer_text(annotation: ExportAnnotation, box_style: str) -> str | None:
    """``dump_json(answer_object(annotation))`` of an OCR annotation, formatted a region at a time
    (the same text, half the time); ``None`` when a region's text is not a string."""
    texts = [box.item.get("text", "") for box in annotation.box_items()]
    if not all(type(text) is str for text in texts):
        return None
    if box_style == "json":
        boxes = [f"[{x1}, {y1}, {x2}, {y2}]" for x1, y1, x2, y2 in annotation.qwen_boxes()]
    else:  # the compact string holds nothing JSON escapes
        boxes = [f'"<box>[{x1},{y1},{x2},{y2}]</box>"' for x1, y1, x2, y2 in annotation.qwen_boxes()]
    regions = [
        f'{{"bbox_2d": {box}, "text_content": {encode_json_string(text)}}}'
        for box, text in zip(boxes, texts, strict=True)
    ]
    return f"[{', '.join(regions)}]"


def _point(point: Any, width: int, height: int) -> list[int] | None:
    return None if point is None else point_to_qwen_1000(point, width, height)


def answer_object(annotation: ExportAnnotation, box_style: str = "json") -> Any:
    """The answer of one checked annotation (see :meth:`qwen_dataset.exporters.stream.BoxChecker.check_chunk`) as a JSON-ready object."""
    payload, width, height = annotation.payload, annotation.width, annotation.height
    task = annotation.task
    items = [box.item for box in annotation.box_items()]
    boxes = _boxes(annotation, box_style)
    if task == Task.OCR:
        return [
            {"bbox_2d": box, "text_content": region.get("text", "")} for region, box in zip(items, boxes, strict=True)
        ]
    if task == Task.GUI_ACTION:
        return {
            "elements": [
                {"bbox_2d": box, "role": element.get("role", "other"), "text": element.get("text", "")}
                for element, box in zip(items, boxes, strict=True)
            ],
            "instruction": payload.get("instruction", ""),
            "actions": [
                {
                    "type": action["type"],
                    "target": action.get("target"),
                    "point_2d": _point(action.get("point"), width, height),
                    "end_point_2d": _point(action.get("end_point"), width, height),
                    "text": action.get("text"),
                    "direction": action.get("direction"),
                }
                for action in payload.get("actions") or []
            ],
        }
    if task == Task.SPATIAL:
        return {
            "objects": [
                {"bbox_2d": box, "label": item.get("label", ""), "occluded": bool(item.get("occluded", False))}
                for item, box in zip(items, boxes, strict=True)
            ],
            "relations": [
                {"subject": relation["subject"], "predicate": relation["predicate"], "object": relation["object"]}
                for relation in payload.get("relations") or []
            ],
            "depth_order": list(payload.get("depth_order") or []),
        }
    if task == Task.IMAGE_TO_CODE:
        return {"html": payload.get("html", ""), "layout": _layout_answer(annotation, boxes)}
    if task == Task.VIDEO_EVENT:
        return {
            "events": [
                {"start": event["start"], "end": event["end"], "description": event.get("description", "")}
                for event in payload.get("events") or []
            ]
        }
    raise ValueError(f"unknown task {task!r}: the tasks are {list(TASK_ORDER)}")


def _layout_answer(annotation: ExportAnnotation, boxes: list[Any]) -> dict[str, Any] | None:
    """The layout tree in the template's shape, rebuilt from the pre-order walk of its boxes."""
    built: list[dict[str, Any]] = []
    for (_, node, _, parent, _, _), box in zip(annotation.box_items(), boxes, strict=True):
        item = {"tag": node.get("tag", ""), "role": node.get("role", "other"), "bbox_2d": box, "children": []}
        if parent is not None:
            built[parent]["children"].append(item)
        built.append(item)
    return built[0] if built else None


# --------------------------------------------------------------------------------------------
# Samples


class _VideoFrames:
    """Sampled frames of each video, in time order, for video samples written as frame sequences."""

    def __init__(self, frames: pd.DataFrame) -> None:
        video = frames[frames["kind"] == FrameKind.VIDEO_FRAME.value]
        ordered = video.sort_values(["upload_id", "t", "frame_id"], kind="stable")
        self.by_upload: dict[str, list[tuple[str, float | None]]] = {}
        columns = (ordered["upload_id"].tolist(), ordered["frame_id"].tolist(), ordered["t"].tolist())
        for upload_id, frame_id, t in zip(*columns, strict=True):
            self.by_upload.setdefault(upload_id, []).append((frame_id, None if pd.isna(t) else float(t)))

    def of(self, upload_id: str) -> list[tuple[str, float]]:
        members = self.by_upload.get(upload_id, [])
        timed = [(frame_id, t) for frame_id, t in members if t is not None]
        if not members or len(timed) < len(members):
            raise ValueError(
                f"video {upload_id}: its sampled frames (kind 'video_frame' with timestamps t) are not in the frames "
                f"manifest; pass video_ref to write the video file instead, or export with the video's frames"
            )
        return timed


def _timestamp_marker(t: float) -> str:
    # The same "<t seconds>" text the prelabel backend shows before each video frame.
    return f"<{t:.1f} seconds>"


class SampleBuilder:
    """Turns checked annotations of one task into qwen-vl-finetune samples."""

    def __init__(
        self,
        task: str,
        frames: pd.DataFrame,
        image_ref: Callable[[str], str],
        *,
        box_style: str = "json",
        video_ref: Callable[[str], str] | None = None,
    ) -> None:
        if task not in TASK_ORDER:
            raise ValueError(f"unknown task {task!r}: the tasks are {list(TASK_ORDER)}")
        if box_style not in BOX_STYLES:
            raise ValueError(f"box_style must be one of {list(BOX_STYLES)}, got {box_style!r}")
        self.task = task
        self.image_ref = image_ref
        self.video_ref = video_ref
        self.box_style = box_style
        self.template = None if task == Task.OCR else load_template(task)
        self.video_frames = _VideoFrames(frames) if task == Task.VIDEO_EVENT and video_ref is None else None

    def prompt(self, annotation: ExportAnnotation) -> str:
        if self.template is None:
            return OCR_PROMPT
        if self.task == Task.GUI_ACTION:
            payload = annotation.payload
            instruction = payload.get("requested_instruction") or payload.get("instruction") or DEFAULT_GUI_INSTRUCTION
            return defuse_prompt(self.template.render_prompt(instruction))
        return defuse_prompt(self.template.render_prompt())

    def answer(self, annotation: ExportAnnotation) -> str:
        """The assistant turn's text: :func:`dump_answer` of :func:`answer_object`."""
        text = _ocr_answer_text(annotation, self.box_style) if self.task == Task.OCR else None
        return dump_answer(answer_object(annotation, self.box_style)) if text is None else _escape_tags(text)

    def sample(self, annotation: ExportAnnotation) -> dict[str, Any]:
        answer = self.answer(annotation)
        if self.task != Task.VIDEO_EVENT:
            return _conversation(
                "image", [self.image_ref(annotation.frame_id)], f"{IMAGE_TAG}\n{self.prompt(annotation)}", answer
            )
        if self.video_ref is not None:
            return _conversation(
                "video", [self.video_ref(annotation.upload_id)], f"{VIDEO_TAG}\n{VIDEO_EVENT_PROMPT}", answer
            )
        assert self.video_frames is not None
        members = self.video_frames.of(annotation.upload_id)
        shown = "\n".join(f"{_timestamp_marker(t)}{IMAGE_TAG}" for _, t in members)
        images = [self.image_ref(frame_id) for frame_id, _ in members]
        return _conversation("image", images, f"{shown}\n{self.prompt(annotation)}", answer)


def _conversation(media_key: str, media: list[str], human: str, answer: str) -> dict[str, Any]:
    return {media_key: media, "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": answer}]}


def iter_qwen_samples(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    image_ref: Callable[[str], str],
    *,
    task: str,
    box_style: str = "json",
    video_ref: Callable[[str], str] | None = None,
) -> Iterator[dict[str, Any]]:
    """qwen-vl-finetune samples of the final ``task`` annotations, one at a time, by ``frame_id``.

    Unknown frames and bad arguments fail at the call; boxes that stay empty after clipping
    fail when the iteration ends, naming every broken annotation.
    """
    builder = SampleBuilder(task, frames, image_ref, box_style=box_style, video_ref=video_ref)
    stream = AnnotationStream(annotations, frames, task)
    return _samples(stream, builder)


def _samples(stream: AnnotationStream, builder: SampleBuilder) -> Iterator[dict[str, Any]]:
    checker = BoxChecker()
    for annotation in stream.checked(checker):
        yield builder.sample(annotation)
    checker.raise_if_any()


class JsonlWriter:
    """Writes records as JSON lines into an open binary handle and counts them."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.count = 0

    def add(self, record: dict[str, Any]) -> None:
        self._handle.write(dumps(record) + b"\n")
        self.count += 1


def write_jsonl(out_path: Path, records: Iterator[dict[str, Any]]) -> int:
    """Stream ``records`` as JSON lines into ``out_path`` atomically; returns the line count."""
    with atomic_writer(Path(out_path)) as handle:
        writer = JsonlWriter(handle)
        for record in records:
            writer.add(record)
    return writer.count


@gc_paused
def export_qwen_jsonl(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    out_path: Path,
    image_ref: Callable[[str], str],
    *,
    task: str,
    box_style: str = "json",
    video_ref: Callable[[str], str] | None = None,
) -> int:
    """Write one qwen-vl-finetune sample per final ``task`` annotation; returns the line count.

    ``image_ref(frame_id)`` gives the image path written into the sample. ``video_ref(upload_id)``
    (``video_event`` only, optional) gives the video file's path: the sample is then a ``video``
    sample with one ``<video>`` tag; without it the video's sampled frames are the sample's
    images, each shown after its ``<t seconds>`` marker as the prelabel backend showed them.
    Annotations with empty answers are kept (they teach "nothing here"); failed prelabels are
    left out. Streamed to a temp file and renamed into place only when complete.
    """
    samples = iter_qwen_samples(annotations, frames, image_ref, task=task, box_style=box_style, video_ref=video_ref)
    return write_jsonl(out_path, samples)


def export_qwen_ocr_jsonl(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    out_path: Path,
    image_ref: Callable[[str], str],
) -> int:
    """Write one Qwen3-VL OCR sample per annotated frame to ``out_path``; returns the line count.

    Uses the final ``ocr`` annotation of each frame (see
    :func:`qwen_dataset.exporters.final_annotations`); failed prelabels are left out. A frame
    whose final annotation has no regions still yields a sample with the answer ``[]``: teaching
    the model that a picture holds no text is as much a part of OCR as reading it, and dropping
    those frames would bias it towards hallucinating text. Lines are ordered by ``frame_id``,
    streamed to a temp file and renamed into place only when complete.
    """
    return export_qwen_jsonl(annotations, frames, out_path, image_ref, task=Task.OCR.value)
