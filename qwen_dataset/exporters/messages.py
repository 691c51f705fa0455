"""The same training samples in the ``messages`` / ``images`` layout of LLaMA-Factory (and ms-swift).

One JSON object per line::

    {"messages": [{"role": "user", "content": "<image>\\n<prompt>"},
                  {"role": "assistant", "content": "<answer>"}],
     "images": ["<image_ref(frame_id)>"]}

Video samples carry ``"videos": ["<video_ref(upload_id)>"]`` and a ``<video>`` tag instead (or,
without a video file, the sampled frames as ``images`` with one ``<image>`` tag each). Prompts
and answers are exactly those of :mod:`qwen_dataset.exporters.qwen_jsonl`; only the envelope
differs, so both files train the same behaviour. ``content`` is a string and the number of
``<image>`` tags over all turns equals ``len(images)``: what LLaMA-Factory's multimodal plugin
checks. LLaMA-Factory finds a file through an entry of ``dataset_info.json`` in the dataset folder
(:func:`llamafactory_dataset_info`), and resolves ``images`` against that folder.

TRL reads typed parts instead of ``<image>`` tags: its file is :mod:`qwen_dataset.exporters.trl`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from qwen_dataset.exporters.qwen_jsonl import iter_qwen_samples, write_jsonl
from qwen_dataset.exporters.stream import gc_paused

_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
_SHAREGPT_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "system_tag": "system",
}


def llamafactory_entry(file_name: str) -> dict[str, Any]:
    """The ``dataset_info.json`` entry of one messages file (LLaMA-Factory's ``sharegpt`` formatting)."""
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": dict(_SHAREGPT_TAGS),
    }


def llamafactory_dataset_info(files: dict[str, str]) -> dict[str, Any]:
    """``dataset_info.json`` for messages files: ``{dataset name: file name relative to the folder}``.

    >>> llamafactory_dataset_info({"messages_ocr": "messages_ocr.jsonl"})["messages_ocr"]["columns"]
    {'messages': 'messages', 'images': 'images'}
    """
    return {name: llamafactory_entry(file_name) for name, file_name in files.items()}


def to_messages(sample: dict[str, Any], system: str | None = None) -> dict[str, Any]:
    """A qwen-vl-finetune sample (``image``/``video`` + ``conversations``) in the messages layout.

    >>> to_messages({"image": "a.png", "conversations": [{"from": "human", "value": "<image>\\nHi"},
    ...                                                   {"from": "gpt", "value": "[]"}]})
    {'messages': [{'role': 'user', 'content': '<image>\\nHi'}, {'role': 'assistant', 'content': '[]'}], 'images': ['a.png']}
    """
    messages = [{"role": "system", "content": system}] if system else []
    messages.extend({"role": _ROLES[turn["from"]], "content": turn["value"]} for turn in sample["conversations"])
    record: dict[str, Any] = {"messages": messages}
    for source_key, target_key in (("image", "images"), ("video", "videos")):
        if source_key in sample:
            media = sample[source_key]
            record[target_key] = [media] if isinstance(media, str) else list(media)
    return record


def iter_messages(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    image_ref: Callable[[str], str],
    *,
    task: str,
    box_style: str = "json",
    video_ref: Callable[[str], str] | None = None,
    system: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Messages-layout records of the final ``task`` annotations, one at a time."""
    samples = iter_qwen_samples(annotations, frames, image_ref, task=task, box_style=box_style, video_ref=video_ref)
    return (to_messages(sample, system) for sample in samples)


@gc_paused
def export_messages_jsonl(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    out_path: Path,
    image_ref: Callable[[str], str],
    *,
    task: str,
    box_style: str = "json",
    video_ref: Callable[[str], str] | None = None,
    system: str | None = None,
) -> int:
    """Write one messages-layout record per final ``task`` annotation; returns the line count.

    Same selection, prompts, answers and atomic streaming as
    :func:`qwen_dataset.exporters.qwen_jsonl.export_qwen_jsonl`; ``system`` adds a system turn.
    """
    records = iter_messages(
        annotations, frames, image_ref, task=task, box_style=box_style, video_ref=video_ref, system=system
    )
    return write_jsonl(out_path, records)
