"""The dataset card (``README.md`` of a release): counts by task, split and language, QC figures,
template and model versions, lineage back to the batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import pandas as pd

from qwen_dataset.payloads import iter_boxes
from qwen_dataset.records import Source, load_payload
from qwen_dataset.release.splits import SPLITS
from qwen_dataset.text import guess_language

CARD_FILE = "README.md"
LANGUAGES = ("zh", "en", "mixed", "other")


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


def _cell(text: str) -> str:
    """Free text inside a Markdown table cell: one line, no column break."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _quality_context(quality: Mapping[str, Any] | None) -> dict[str, Any]:
    """Targets in force, each batch's status per figure and the waivers, for the card."""
    if not quality:
        return {"gates_known": False, "targets": [], "statuses": [], "waivers": [], "insufficient": 0}
    targets = quality.get("targets", {})
    minimum = quality.get("min_sample", {})
    statuses = quality.get("statuses", {})
    figures = list(targets)
    return {
        "gates_known": True,
        "targets": [(name, f"> {targets[name]:g}", minimum.get(name, "-")) for name in figures],
        "status_header": ["batch", *figures],
        "statuses": [
            (batch, *[by_figure.get(name, "-") for name in figures]) for batch, by_figure in sorted(statuses.items())
        ],
        "waivers": [
            (
                w["batch"],
                w["figure"],
                "-" if w.get("value") is None else f"{w['value']:.4g}",
                w["waived_by"],
                w["waived_at"],
                _cell(w["reason"]),
            )
            for w in quality.get("waivers", [])
        ],
        "insufficient": sum(
            status == "insufficient sample" for by_figure in statuses.values() for status in by_figure.values()
        ),
    }


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("qwen_dataset.release", "templates"),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # Markdown, not HTML
)


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
    quality: Mapping[str, Any] | None = None,
) -> str:
    """The dataset card (Markdown, ``templates/card.md.j2``); deterministic for the same inputs."""
    split_of, task_of = frames["split"], annotations["task"]
    contents = [
        (
            split,
            frames.loc[split_of == split, "upload_id"].nunique(),
            int((split_of == split).sum()),
            int((annotations["split"] == split).sum()),
        )
        for split in SPLITS
    ]
    contents.append(("total", frames["upload_id"].nunique(), len(frames), len(annotations)))
    by_task = [
        (
            task,
            *[int(((task_of == task) & (annotations["split"] == split)).sum()) for split in SPLITS],
            int((task_of == task).sum()),
        )
        for task in sorted(task_of.unique())
    ]
    languages = text_languages(annotations)
    ai = annotations[annotations["source"] == Source.AI.value]
    augmentation: list[tuple[Any, ...]] = []
    if len(lineage):
        grouped = lineage.groupby("pipeline").agg(frames=("frame_id", "nunique"), annotations=("annotation_id", "size"))
        augmentation = list(grouped.reset_index().itertuples(index=False, name=None))
    context = {
        "name": name,
        "version": version,
        "digest": digest,
        "splits": SPLITS,
        "language_names": LANGUAGES,
        "contents": contents,
        "excluded": excluded,
        "by_task": by_task,
        "languages": [
            (task, *[languages[(task, language)] for language in LANGUAGES])
            for task in sorted({task for task, _ in languages})
        ],
        "sources": [(source.value, int((annotations["source"] == source.value).sum())) for source in Source],
        "models": list(
            ai.groupby(["task", "author", "template_version"])
            .size()
            .reset_index(name="n")
            .itertuples(index=False, name=None)
        ),
        "template_versions": list(
            annotations.groupby(["task", "template_version"])
            .size()
            .reset_index(name="n")
            .itertuples(index=False, name=None)
        ),
        "people": annotations.loc[annotations["source"] != Source.AI.value, "author"].nunique(),
        "qc": _flatten(qc) if qc else [],
        **_quality_context(quality),
        "augmentation": augmentation,
        "lineage": [(b["batch"], b["frames"], b["annotations"], b["export_folder"] or "-") for b in batches],
        "train_below": f"{ratios[0]:g}",
        "val_below": f"{ratios[0] + ratios[1]:g}",
        "salt_note": f"salt: `{salt}`" if salt else "no salt",
        "listed_files": [path for path in files if not path.startswith("images/")],
        "pictures": sum(1 for path in files if path.startswith("images/")),
    }
    return _TEMPLATES.get_template("card.md.j2").render(context) + "\n"
