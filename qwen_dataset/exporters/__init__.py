"""Dataset exporters: pure functions from the annotation and frame manifests to files.

Every exporter takes the ``annotations`` manifest (columns of :class:`records.AnnotationRecord`),
the ``frames`` manifest (columns of :class:`records.FrameRecord`), an output path and an
``image_ref`` callable that maps a ``frame_id`` to the image reference written into the dataset
(a relative path, a URL...), and writes its file atomically.

The helpers here are the rules every exporter shares:

* :func:`final_annotations` picks the one annotation per frame that goes into a dataset;
* :func:`frame_sizes` looks frame sizes up, refusing annotations of unknown frames;
* :func:`checked_regions` flattens region payloads and refuses boxes outside their frame.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from qwen_dataset.geometry import clip_box, is_valid_box
from qwen_dataset.records import SOURCE_PRECEDENCE, AnnotationStatus, regions_table


def final_annotations(annotations: pd.DataFrame, task: str) -> pd.DataFrame:
    """The annotation of each frame that a dataset uses for ``task``, sorted by ``frame_id``.

    Only ``status == "ok"`` rows count (failed prelabels carry no payload worth training on).
    When a frame has several, an arbitrated one beats a human one, which beats the AI prelabel;
    among equals the newest ``created_at`` wins. One frame therefore never yields two samples
    with different answers.
    """
    ok = annotations[(annotations["status"] == AnnotationStatus.OK.value) & (annotations["task"] == task)]
    ranked = ok.assign(_precedence=ok["source"].map(SOURCE_PRECEDENCE).fillna(len(SOURCE_PRECEDENCE)))
    ranked = ranked.sort_values(["frame_id", "_precedence", "created_at"], ascending=[True, True, False], kind="stable")
    return ranked.drop_duplicates("frame_id", keep="first").drop(columns="_precedence").reset_index(drop=True)


def frame_sizes(frames: pd.DataFrame, frame_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
    """``frame_id -> (width, height)`` for the given frames; unknown frames are an error."""
    known = frames.drop_duplicates("frame_id").set_index("frame_id")[["width", "height"]]
    wanted = list(dict.fromkeys(frame_ids))
    missing = [frame_id for frame_id in wanted if frame_id not in known.index]
    if missing:
        raise ValueError(
            f"{len(missing)} annotated frame(s) are missing from the frames manifest "
            f"(first: {missing[:5]}); export the annotations together with the frames manifest of the same batch"
        )
    return {frame_id: (int(known.at[frame_id, "width"]), int(known.at[frame_id, "height"])) for frame_id in wanted}


def checked_regions(chosen: pd.DataFrame, frames: pd.DataFrame, task: str) -> pd.DataFrame:
    """Regions of the chosen annotations, clipped to their frame, in reading order per annotation.

    Clipping absorbs the sub-pixel drift of percent or 0-1000 round trips; a box that is still
    empty afterwards is a broken annotation, and exporting would silently lose it, so it is an error.
    """
    table = regions_table(chosen, frames, tasks=(task,))
    if table.empty:
        return table
    clipped = [
        clip_box(box, width, height)
        for box, width, height in zip(table[["x1", "y1", "x2", "y2"]].to_numpy(), table["width"], table["height"])
    ]
    valid = [is_valid_box(box, width, height) for box, width, height in zip(clipped, table["width"], table["height"])]
    if not all(valid):
        bad = table.loc[[not flag for flag in valid], "annotation_id"].unique().tolist()
        raise ValueError(
            f"{len(bad)} annotation(s) have empty boxes or boxes outside their frame (first: {bad[:5]}); "
            f"correct them in the review workbench or let the geometry gate reject them before exporting"
        )
    table[["x1", "y1", "x2", "y2"]] = pd.DataFrame(clipped, index=table.index, columns=["x1", "y1", "x2", "y2"])
    return table.sort_values(["annotation_id", "reading_order", "region_index"], kind="stable")


# Imported last: the exporter modules use the helpers defined above.
from qwen_dataset.exporters.coco import export_coco  # noqa: E402
from qwen_dataset.exporters.qwen_jsonl import OCR_PROMPT, export_qwen_ocr_jsonl  # noqa: E402

__all__ = [
    "OCR_PROMPT",
    "SOURCE_PRECEDENCE",
    "checked_regions",
    "export_coco",
    "export_qwen_ocr_jsonl",
    "final_annotations",
    "frame_sizes",
]
