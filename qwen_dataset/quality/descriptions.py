"""Text that describes an annotation, for semantic consistency between annotators.

Which words count as the "description" of a payload:

* ``gui_action``: the instruction;
* ``video_event``: each event's description, paired with the description of the other annotator's
  event it matches in time (:func:`qwen_dataset.quality.event_agreement.matched_descriptions`), so
  two annotators who saw the same events in another order still compare like with like; events
  without a counterpart are counted by the temporal agreement instead;
* ``spatial``: the relation phrases, e.g. "cup left_of laptop", in payload order.

Tasks without free text (``ocr``, ``image_to_code``) have none: OCR text is measured by CER and
code by rendering.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from qwen_dataset.payloads import iter_boxes
from qwen_dataset.quality.agreement import pair_annotations
from qwen_dataset.quality.event_agreement import matched_descriptions

DESCRIBED_TASKS = ("gui_action", "video_event", "spatial")


def description_of(task: str, payload: Mapping[str, Any]) -> str:
    if task == "gui_action":
        return str(payload.get("instruction") or "")
    if task == "video_event":
        events = sorted(payload.get("events", []), key=lambda e: (e.get("start", 0), e.get("end", 0)))
        return ". ".join(str(e.get("description", "")) for e in events)
    if task == "spatial":
        objects = [box.item for box in iter_boxes(task, payload)]

        def label(index: int) -> str:
            return str(objects[index].get("label", index)) if 0 <= index < len(objects) else str(index)

        return ". ".join(
            f"{label(r['subject'])} {str(r['predicate']).replace('_', ' ')} {label(r['object'])}"
            for r in payload.get("relations", [])
        )
    return ""


def description_pairs(annotations: pd.DataFrame, sources: tuple[str, ...] = ("human",)) -> list[tuple[str, str]]:
    """(second annotator, first annotator) description pairs of every double-annotated item."""
    pairs: list[tuple[str, str]] = []
    for task in DESCRIBED_TASKS:
        if not len(annotations) or not (annotations["task"] == task).any():
            continue
        for row in pair_annotations(annotations, task, sources).itertuples(index=False):
            if task == "video_event":
                pairs.extend((second, first) for first, second in matched_descriptions(row.payload_a, row.payload_b))
                continue
            first = description_of(task, json.loads(row.payload_a))
            second = description_of(task, json.loads(row.payload_b))
            if first or second:
                pairs.append((second, first))
    return pairs
