"""OCR samples in the conversation JSONL of Qwen3-VL's ``qwen-vl-finetune``.

One JSON object per line::

    {"image": "<image_ref(frame_id)>",
     "conversations": [
        {"from": "human", "value": "<image>\\nSpot all the text in the image with line-level, ..."},
        {"from": "gpt", "value": "[{\\"bbox_2d\\": [x1, y1, x2, y2], \\"text_content\\": \\"...\\"}, ...]"}]}

``bbox_2d`` is relative to the frame on Qwen3-VL's 0-1000 scale, regions in reading order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from qwen_dataset.exporters import checked_regions, final_annotations, frame_sizes
from qwen_dataset.geometry import to_qwen_1000
from qwen_dataset.records import Task
from qwen_dataset.storage import atomic_writer

# The line-level text-spotting prompt of Qwen3-VL's OCR cookbook.
OCR_PROMPT = "Spot all the text in the image with line-level, and output in JSON format."
IMAGE_TAG = "<image>"

# Tag-like text read off a screenshot ("<image>" in HTML source, "<|im_end|>") must not reach the
# trainer as a media placeholder or a special token. Escaping "<" as \u003c inside the answer's
# JSON strings hides it, and json.loads of the answer still returns the exact text.
_ESCAPES = {"<image>": "\\u003cimage>", "<video>": "\\u003cvideo>", "<|": "\\u003c|"}


def _escape_tags(answer: str) -> str:
    for tag, escaped in _ESCAPES.items():
        answer = answer.replace(tag, escaped)
    return answer


def ocr_answer(regions: pd.DataFrame, width: int, height: int) -> str:
    """The assistant turn: a JSON list of ``{"bbox_2d", "text_content"}`` in the given row order."""
    items = [
        {"bbox_2d": to_qwen_1000([row.x1, row.y1, row.x2, row.y2], width, height), "text_content": row.text}
        for row in regions.itertuples(index=False)
    ]
    return _escape_tags(json.dumps(items, ensure_ascii=False))


def ocr_sample(image: str, answer: str) -> dict[str, Any]:
    return {
        "image": image,
        "conversations": [
            {"from": "human", "value": f"{IMAGE_TAG}\n{OCR_PROMPT}"},
            {"from": "gpt", "value": answer},
        ],
    }


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
    chosen = final_annotations(annotations, Task.OCR.value)
    sizes = frame_sizes(frames, chosen["frame_id"])
    regions = checked_regions(chosen, frames, Task.OCR.value)
    by_annotation = dict(tuple(regions.groupby("annotation_id", sort=False))) if not regions.empty else {}
    empty = regions.iloc[0:0]
    count = 0
    with atomic_writer(Path(out_path), "wb") as handle:
        for annotation_id, frame_id in zip(chosen["annotation_id"], chosen["frame_id"]):
            width, height = sizes[frame_id]
            answer = ocr_answer(by_annotation.get(annotation_id, empty), width, height)
            line = json.dumps(ocr_sample(image_ref(frame_id), answer), ensure_ascii=False)
            handle.write(line.encode("utf-8") + b"\n")
            count += 1
    return count
