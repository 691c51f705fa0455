"""The same training samples as a Hugging Face ``datasets`` Parquet file in TRL's vision-SFT layout.

One row per sample, two columns (TRL 1.x ``SFTTrainer`` with a vision-language model; any
``datasets`` user)::

    messages: [{"role": "user", "content": [{"type": "image", "text": null},
                                            {"type": "text", "text": "<prompt>"}]},
               {"role": "assistant", "content": [{"type": "text", "text": "<answer>"}]}]
    images:   [Image, ...]   (the pictures' bytes embedded: the file loads from any folder)

Every message holds typed parts, one ``{"type": "image"}`` placeholder per entry of ``images``, in
order, at the place of the ``<image>`` tag of the Qwen sample; TRL's
``prepare_multimodal_messages`` fills the placeholders from ``images`` and parses no ``<image>``
text, so no tag is left in any text part (a video sample keeps each ``<t seconds>`` marker right
before its frame). The schema carries the ``datasets`` features, so
``load_dataset("parquet", data_files=...)`` gives ``images`` as ``List(Image())`` at once, and the
files of all tasks share one schema and load together. Prompts and answers are exactly those of
:mod:`qwen_dataset.exporters.qwen_jsonl`.

Rows are written in row groups of :data:`ROWS_PER_GROUP` samples or :data:`GROUP_BYTES` of
pictures, whichever comes first: memory holds one group, never the dataset (a video sample holds
all its sampled frames, so one long video is one large row).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qwen_dataset.exporters.qwen_jsonl import IMAGE_TAG, iter_qwen_samples
from qwen_dataset.exporters.stream import gc_paused
from qwen_dataset.store.paths import atomic_writer

ROWS_PER_GROUP = 512
#: A row group is also closed at this many bytes of pictures (a video sample holds all its frames).
GROUP_BYTES = 64 * 1024 * 1024
_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
_TAG_SPLIT = re.compile(f"({re.escape(IMAGE_TAG)})")

_PART = pa.struct([("type", pa.string()), ("text", pa.string())])
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.list_(_PART))])
_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
# What datasets.Features({"messages": List({...}), "images": List(Image())}).to_dict() gives.
_FEATURES = {
    "messages": {
        "feature": {
            "role": {"dtype": "string", "_type": "Value"},
            "content": {
                "feature": {
                    "type": {"dtype": "string", "_type": "Value"},
                    "text": {"dtype": "string", "_type": "Value"},
                },
                "_type": "List",
            },
        },
        "_type": "List",
    },
    "images": {"feature": {"_type": "Image"}, "_type": "List"},
}
TRL_SCHEMA = pa.schema(
    [("messages", pa.list_(_MESSAGE)), ("images", pa.list_(_IMAGE))],
    metadata={"huggingface": json.dumps({"info": {"features": _FEATURES}})},
)


def typed_parts(text: str) -> list[dict[str, str | None]]:
    """A prompt's text as typed parts, each ``<image>`` tag an image placeholder at its place.

    >>> typed_parts("<0.0 seconds><image>\\nWhat happens?")
    [{'type': 'text', 'text': '<0.0 seconds>'}, {'type': 'image', 'text': None}, {'type': 'text', 'text': 'What happens?'}]
    """
    parts: list[dict[str, str | None]] = []
    for piece in _TAG_SPLIT.split(text):
        if piece == IMAGE_TAG:
            parts.append({"type": "image", "text": None})
        elif piece.strip():
            # The line breaks around a tag only separated it from the text (qwen-vl-finetune strips them too).
            parts.append({"type": "text", "text": piece.strip()})
    return parts


def to_trl_record(sample: dict[str, Any], read_image: Callable[[str], bytes]) -> dict[str, Any]:
    """A qwen-vl-finetune sample (see :mod:`.qwen_jsonl`) as a TRL row; ``read_image(ref)`` gives a picture's bytes."""
    messages: list[dict[str, Any]] = []
    for turn in sample["conversations"]:
        role = _ROLES[turn["from"]]
        # Only prompts hold media tags; answers escape theirs (see qwen_jsonl), so they stay one text part.
        content: list[dict[str, str | None]] = (
            typed_parts(turn["value"]) if role == "user" else [{"type": "text", "text": turn["value"]}]
        )
        messages.append({"role": role, "content": content})
    refs = list(sample.get("image") or [])
    placeholders = sum(part["type"] == "image" for message in messages for part in message["content"])
    if placeholders != len(refs):
        raise ValueError(
            f"a sample has {placeholders} image placeholder(s) for {len(refs)} image(s) ({refs[:3]}); "
            "a video sample needs its sampled frames in the frames manifest"
        )
    return {"messages": messages, "images": [{"bytes": read_image(ref), "path": ref} for ref in refs]}


def _list_array(offsets: list[int], values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def trl_table(records: list[dict[str, Any]]) -> pa.Table:
    """``pa.Table.from_pylist(records, schema=TRL_SCHEMA)``, built from flat columns: converting
    the nested dicts row by row costs three times as much (the same table, tested)."""
    roles: list[str] = []
    kinds: list[str | None] = []
    texts: list[str | None] = []
    message_offsets, part_offsets, image_offsets = [0], [0], [0]
    image_bytes: list[bytes | None] = []
    image_paths: list[str | None] = []
    for record in records:
        for message in record["messages"]:
            roles.append(message["role"])
            for part in message["content"]:
                kinds.append(part["type"])
                texts.append(part["text"])
            part_offsets.append(len(kinds))
        message_offsets.append(len(roles))
        for image in record["images"]:
            image_bytes.append(image["bytes"])
            image_paths.append(image["path"])
        image_offsets.append(len(image_bytes))
    parts = pa.StructArray.from_arrays([pa.array(kinds, pa.string()), pa.array(texts, pa.string())], fields=list(_PART))
    content = _list_array(part_offsets, parts)
    messages = pa.StructArray.from_arrays([pa.array(roles, pa.string()), content], fields=list(_MESSAGE))
    images = pa.StructArray.from_arrays(
        [pa.array(image_bytes, pa.binary()), pa.array(image_paths, pa.string())], fields=list(_IMAGE)
    )
    columns = [_list_array(message_offsets, messages), _list_array(image_offsets, images)]
    return pa.Table.from_arrays(columns, schema=TRL_SCHEMA)


class TrlWriter:
    """Streams TRL rows into an open binary handle, a row group at a time (see the module docstring).

    A context manager: leaving it closes the Parquet file (its footer written), also on error.
    """

    def __init__(self, handle: IO[bytes], media_root: Path) -> None:
        self._root = os.fspath(media_root)
        self._writer = pq.ParquetWriter(handle, TRL_SCHEMA)
        self._group: list[dict[str, Any]] = []
        self._held = 0
        self.count = 0

    def _read_image(self, ref: str) -> bytes:
        # Plain system calls: a Path, or an io file object, per picture costs more than the read.
        descriptor = os.open(os.path.join(self._root, ref), os.O_RDONLY)
        try:
            size = os.fstat(descriptor).st_size
            parts = []
            while part := os.read(descriptor, max(size, 1 << 16)):
                parts.append(part)
        finally:
            os.close(descriptor)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def add(self, sample: dict[str, Any]) -> None:
        """One qwen-vl-finetune sample as a row; its pictures are read from the media root."""
        record = to_trl_record(sample, self._read_image)
        self._group.append(record)
        self._held += sum(len(image["bytes"]) for image in record["images"])
        if len(self._group) == ROWS_PER_GROUP or self._held >= GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._group:
            self._writer.write_table(trl_table(self._group))
            self.count += len(self._group)
        self._group, self._held = [], 0

    def __enter__(self) -> TrlWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self._flush()
        self._writer.close()


@gc_paused
def export_trl_parquet(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    out_path: Path,
    image_ref: Callable[[str], str],
    *,
    task: str,
    media_root: Path,
) -> int:
    """Write one TRL row per final ``task`` annotation into a Parquet file; returns the row count.

    ``image_ref(frame_id)`` is the picture's path relative to ``media_root``, whose bytes are
    embedded (the path is kept beside them). Same selection and samples as
    :func:`qwen_dataset.exporters.qwen_jsonl.export_qwen_jsonl`; written to a temp file and
    renamed into place only when complete.
    """
    samples = iter_qwen_samples(annotations, frames, image_ref, task=task)
    with atomic_writer(Path(out_path)) as handle, TrlWriter(handle, media_root) as writer:
        for sample in samples:
            writer.add(sample)
    return writer.count
