"""Label Studio's side of the bargain: the XML labeling config of each task type, the shared labels
(font styles, spatial predicates, event label) and frame-number <-> seconds on the video timeline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

from qwen_dataset.exporters.coco import schema_labels
from qwen_dataset.payloads import SPATIAL_PREDICATES, TASK_ORDER
from qwen_dataset.records import (
    Task,
)

#: ``template_version`` of records imported from Label Studio (bump when the configs change).
LS_TEMPLATE_VERSION = "label-studio-1.2"

#: Frame rate of the ``<Video>`` tag: timeline ranges are frame numbers at this rate.
DEFAULT_FRAME_RATE = 25.0
FONT_STYLES = ("regular", "bold", "italic", "handwritten", "monospace", "decorative")
CHILD_OF = "child_of"
OCR_LABEL = "text"
OCCLUDED = "occluded"
OBJECT_LABEL = "object"  # the one label of a spatial object's box; what it is, is its "label" text
EVENT_LABEL = "event"


class LabelStudioImportError(ValueError):
    """A Label Studio annotation that cannot become a canonical payload; the message says why."""


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
    'Actions, one per line (Action DSL): CLICK #e0 @(x,y) | TYPE #e1 "text" | SCROLL down 3 | '
    'KEY "Enter" | WAIT 1.5 | DRAG #e2 @(x,y) -> @(x,y); #e<i> names an element region, points in pixels'
)


def check_frame_rate(frame_rate: float) -> None:
    if isinstance(frame_rate, bool) or not isinstance(frame_rate, (int, float)) or not 0 < frame_rate < math.inf:
        raise ValueError(
            f"frame_rate must be a positive number of frames per second (the <Video frameRate>), got {frame_rate!r}"
        )


def labeling_config(task: str, *, frame_rate: float = DEFAULT_FRAME_RATE, html_text_box: bool = True) -> str:
    """The Label Studio labeling config (XML) for ``task``; its control names match the results.

    ``html_text_box=False`` leaves the ``image_to_code`` HTML's text box out: the review
    workbench edits the HTML in its own code editor beside the rendering, and adds it to the results.
    """
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
            _labels("RectangleLabels", "element", "image", schema_labels(task) or ["other"]),
            _region_text("element_text", "Visible text or accessible name"),
            _task_text("instruction", "Instruction the actions carry out", rows=2),
            _task_text("actions", _DSL_HINT, rows=8),
        ]
    elif task == Task.SPATIAL:
        parts = [
            _IMAGE,
            # RectangleLabels, not Rectangle: the editor shows its regions list and the Relations
            # panel (where a relation arrow gets its predicate) only for a "...Labels" control.
            _labels("RectangleLabels", "object", "image", [OBJECT_LABEL]),
            _region_text("label", "Short noun phrase naming the object", required=True),
            _choices("occluded", [OCCLUDED], "multiple"),
            '  <Number name="depth" toName="image" perRegion="true" min="0"/>',
            _relations(SPATIAL_PREDICATES),
        ]
    elif task == Task.IMAGE_TO_CODE:
        parts = [
            _IMAGE,
            _labels("RectangleLabels", "block", "image", schema_labels(task) or ["other"]),
            _region_text("tag", "HTML tag rendering this block"),
            _relations([CHILD_OF]),
            *([_task_text("html", "HTML (self-contained, inline CSS)", rows=20)] if html_text_box else []),
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


def seconds_to_frame(seconds: float, frame_rate: float) -> int:
    """1-based frame number of the frame nearest to ``seconds`` (halves round up, not to even)."""
    return math.floor(float(seconds) * frame_rate + 0.5) + 1


def frame_to_seconds(frame: float, frame_rate: float) -> float:
    return (float(frame) - 1.0) / frame_rate
