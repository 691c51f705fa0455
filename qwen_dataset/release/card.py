"""The dataset card (``README.md`` of a release): counts by task, split and language, QC figures,
template and model versions, lineage back to the batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from qwen_dataset.payloads import iter_boxes
from qwen_dataset.records import Source, load_payload
from qwen_dataset.release.splits import SPLITS
from qwen_dataset.text import guess_language

CARD_FILE = "README.md"
LANGUAGES = ("zh", "en", "mixed", "other")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        items: list[tuple[str, Any]] = []
        for key in sorted(value, key=str):
            items += _flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
        return items
    if isinstance(value, float):
        return [(prefix, f"{value:.4g}")]
    return [(prefix, value)]


def text_languages(annotations: pd.DataFrame) -> Counter[tuple[str, str]]:
    """``(task, language)`` -> number of text items: boxes that carry a text (OCR regions, GUI elements).

    A region's own ``language`` counts when it has one; otherwise the language is guessed from the text.
    """
    counts: Counter[tuple[str, str]] = Counter()
    for task, payload in zip(annotations["task"], annotations["payload"]):
        for box in iter_boxes(task, load_payload(payload)):
            text = str(box.item.get("text") or "").strip()
            if task != "ocr" and not text:
                continue
            language = box.item.get("language") or guess_language(text)
            counts[(task, language if language in LANGUAGES else "other")] += 1
    return counts


def render_card(
    name: str,
    version: str,
    digest: str,
    frames: pd.DataFrame,
    annotations: pd.DataFrame,
    lineage: pd.DataFrame,
    qc: Mapping[str, Any],
    ratios: Sequence[float],
    salt: str,
    batches: Sequence[Mapping[str, Any]],
    excluded: int,
    files: Sequence[str],
) -> str:
    """The dataset card (Markdown); deterministic for the same inputs."""
    parts = [
        f"# {name} — release {version}",
        "",
        "Assembled by qwen-dataset from batches that passed their quality gates. This folder is "
        f"immutable; any change to its data makes a new version. Content digest: `{digest}`.",
        "",
        "## Contents",
        "",
        _table(
            ["split", "uploads", "frames", "annotations"],
            [
                *[
                    (
                        split,
                        frames.loc[frames["split"] == split, "upload_id"].nunique(),
                        int((frames["split"] == split).sum()),
                        int((annotations["split"] == split).sum()),
                    )
                    for split in SPLITS
                ],
                ("total", frames["upload_id"].nunique(), len(frames), len(annotations)),
            ],
        ),
        "",
        f"Annotations that failed (status other than ok) are not part of the release: {excluded}.",
        "",
        "## Annotations by task",
        "",
        _table(
            ["task", *SPLITS, "total"],
            [
                (
                    task,
                    *[int(((annotations["task"] == task) & (annotations["split"] == s)).sum()) for s in SPLITS],
                    int((annotations["task"] == task).sum()),
                )
                for task in sorted(annotations["task"].unique())
            ],
        ),
        "",
        "## Text by task and language",
        "",
        "Text items are OCR regions and GUI elements that carry text; the language is the label's "
        "own (OCR) or guessed from the scripts of the text (GUI).",
        "",
    ]
    languages = text_languages(annotations)
    tasks_with_text = sorted({task for task, _ in languages})
    parts += [
        _table(
            ["task", *LANGUAGES], [(task, *[languages[(task, lang)] for lang in LANGUAGES]) for task in tasks_with_text]
        )
        if tasks_with_text
        else "No text items.",
        "",
        "## Provenance",
        "",
        _table(["source", "annotations"], [(s.value, int((annotations["source"] == s.value).sum())) for s in Source]),
        "",
        "Models (authors of AI annotations) and template versions:",
        "",
    ]
    ai = annotations[annotations["source"] == Source.AI.value]
    model_rows = ai.groupby(["task", "author", "template_version"]).size().reset_index(name="n")
    parts += [
        _table(["task", "model", "template version", "annotations"], model_rows.itertuples(index=False, name=None))
        if len(model_rows)
        else "No AI annotations.",
        "",
        _table(
            ["task", "template version", "annotations"],
            annotations.groupby(["task", "template_version"])
            .size()
            .reset_index(name="n")
            .itertuples(index=False, name=None),
        ),
        "",
        f"Human annotators and reviewers: {annotations.loc[annotations['source'] != Source.AI.value, 'author'].nunique()} "
        "distinct ids (the ids are in annotations.parquet, not in this card).",
        "",
        "## Quality control",
        "",
        _table(["figure", "value"], _flatten(qc)) if qc else "No QC figures were given for this release.",
        "",
    ]
    if len(lineage):
        augmented = lineage.groupby("pipeline").agg(
            frames=("frame_id", "nunique"), annotations=("annotation_id", "size")
        )
        parts += [
            "## Augmentation",
            "",
            "Augmented frames keep the upload (and so the split) of their source frame; "
            "augmentation_lineage.parquet gives the source and the exact random draw of each.",
            "",
            _table(["pipeline", "frames", "annotations"], augmented.reset_index().itertuples(index=False, name=None)),
            "",
        ]
    parts += [
        "## Lineage",
        "",
        _table(
            ["batch", "frames", "annotations", "export folder"],
            [(b["batch"], b["frames"], b["annotations"], b["export_folder"] or "-") for b in batches],
        ),
        "",
        "## Splits",
        "",
        f"By upload: sha256(salt + upload_id), read as a number in [0, 1), picks train below {ratios[0]:g}, "
        f"val below {ratios[0] + ratios[1]:g}, test above ({f'salt: `{salt}`' if salt else 'no salt'}). Frames of one video, pages of one "
        "PDF and augmented copies of a frame never land in two splits. splits.json lists the ids; "
        "frames.parquet and annotations.parquet carry a `split` column.",
        "",
        "## Files",
        "",
        *[f"- `{path}`" for path in files if not path.startswith("images/")],
        f"- `images/`: {sum(1 for path in files if path.startswith('images/'))} pictures",
        "",
    ]
    return "\n".join(parts)
