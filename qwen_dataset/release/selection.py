"""Which batches a release takes, and what each brings: the release's selection policy.

A batch is released when its export is current - nothing upstream of it was materialized after it
(a newer upstream run means a gate stopped the export, or the batch is being reprocessed), its
quality report is newer than its latest corrections, and the report's headline figures pass the
targets (decided again here on the stored figures, so an export launched on its own, past a
failed gate, cannot reach a release). A file uploaded in two batches enters the release once,
with the first batch; augmented copies made before the latest corrections carry old labels and
are left out; augmented copies go to the train split only.

When each asset was last materialized for a batch is the Dagster instance's knowledge; the
caller passes it in as ``latest(asset, batch) -> position | None``, a number that grows with
every materialization (an event's storage id or timestamp), asked of the instance once per
asset for all batches. The quality figures are read once per batch and decided by the gate's own
rules (targets, minimum samples, waivers) in one Great Expectations run over all batches, each
batch's outcome read off the rows it names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from qwen_dataset.quality.targets import GATED, figure_number
from qwen_dataset.release.assemble import BatchExport
from qwen_dataset.release.splits import split_for_upload
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import read_parquet

if TYPE_CHECKING:  # the gate's rules (and Great Expectations) load when a release decides, not on import
    from qwen_dataset.quality.gates import GateDecision, Waiver

#: ``latest(asset, batch)``: when the asset was last materialized for the batch, as a number that
#: grows with every materialization (None: never).
LatestMaterialization = Callable[[str, str], float | None]

# An export is current only if nothing upstream of it was materialized after it.
UPSTREAM_OF_EXPORTS = ("raw_uploads", "frames", "ai_annotations", "human_corrections", "qc_report")


@dataclasses.dataclass(frozen=True)
class QualityPolicy:
    """What the release holds the batches to: targets, minimum samples and the active waivers."""

    targets: Mapping[str, float]
    min_sample: Mapping[str, int]
    waivers: Sequence[Waiver] = ()


#: ``batch -> its quality report's headline row`` (column -> value; ``{}`` for a report without
#: rows). A release weighs thousands of batches: one dict each, not a one-row DataFrame each.
HeadlineRows = Mapping[str, Mapping[str, Any]]


def headline_row(table: pd.DataFrame) -> dict[str, Any]:
    """The headline row of a ``qc_report`` table, as plain Python values (``{}``: no row)."""
    return table.iloc[:1].to_dict("records")[0] if len(table) else {}


def read_headlines(layout: StorageLayout, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each batch's stored quality figures (its ``qc_report`` row); batches without one are absent."""
    paths = {batch: layout.manifest("qc_report", batch) for batch in names}
    return {batch: headline_row(read_parquet(path)) for batch, path in paths.items() if path.exists()}


def gate_decisions(headlines: HeadlineRows, names: Sequence[str], policy: QualityPolicy) -> dict[str, GateDecision]:
    """The gate's decision on each batch's stored figures (one GX run for all); no report, no entry."""
    rows = {batch: dict(headlines[batch]) or {"batch": batch} for batch in names if batch in headlines}
    from qwen_dataset.quality.gates import decide_many

    return decide_many(rows, policy.targets, policy.min_sample, policy.waivers)


def quality_verdicts(decisions: Mapping[str, GateDecision], names: Sequence[str]) -> dict[str, str]:
    """Why each of ``names`` is kept out by its measured quality (``decisions``: :func:`gate_decisions`
    over at least ``names``); a batch that passes, is waived or under-sampled is absent.

    The gate decided this when the export ran; it is decided again on the stored figures so an
    export launched on its own, past a failed gate, cannot reach a release.
    """
    verdicts = {}
    for batch in names:
        if batch not in decisions:
            verdicts[batch] = "no quality report"
            continue
        failed = [verdict.describe() for verdict in decisions[batch].verdicts if verdict.status == "fail"]
        if failed:
            verdicts[batch] = f"quality gate fails: {'; '.join(failed)}"
    return verdicts


def releasable_batches(
    latest: LatestMaterialization,
    names: list[str],
    decisions: Mapping[str, GateDecision],
) -> tuple[list[str], list[dict[str, str]]]:
    """Batches whose export is current and whose quality passes (``decisions``: :func:`gate_decisions`
    over them, decided once for the selection and the release's quality record); the others with the reason."""
    reasons: dict[str, str] = {}
    for batch in names:
        exported = latest("exports", batch)
        if exported is None:
            reasons[batch] = "never exported (not processed yet, or stopped by a gate)"
            continue
        newer = [name for name in UPSTREAM_OF_EXPORTS if (latest(name, batch) or 0) > exported]
        if newer:
            reasons[batch] = (
                f"{', '.join(newer)} changed after the last export: a gate stopped the export or the batch is "
                "being reprocessed"
            )
        elif (latest("qc_report", batch) or 0) < (latest("human_corrections", batch) or 0):
            reasons[batch] = "the quality report predates the latest corrections"
    reasons.update(quality_verdicts(decisions, [batch for batch in names if batch not in reasons]))
    eligible = [batch for batch in names if batch not in reasons]
    excluded = [{"batch": batch, "reason": reasons[batch]} for batch in names if batch in reasons]
    return eligible, excluded


def augmented_copies(
    latest: LatestMaterialization, layout: StorageLayout, batch: str, ratios: Sequence[float]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None:
    """The batch's augmented copies in the train split (val/test stay real pictures).

    Copies made before the latest corrections carry old labels and are left out.
    """
    folder = layout.manifest("augmented_dataset", batch).with_suffix("")
    if not (folder / "frames.parquet").exists():
        return None
    if (latest("augmented_dataset", batch) or 0) < (latest("human_corrections", batch) or 0):
        return None
    frames = read_parquet(folder / "frames.parquet")
    annotations = read_parquet(folder / "annotations.parquet")
    lineage = read_parquet(folder / "lineage.parquet")
    train = frames["upload_id"].map(lambda upload: split_for_upload(upload, ratios) == "train")
    kept = set(frames.loc[train, "frame_id"])
    return (
        frames[frames["frame_id"].isin(kept)],
        annotations[annotations["frame_id"].isin(kept)],
        lineage[lineage["frame_id"].isin(kept)],
    )


def batch_export(
    latest: LatestMaterialization,
    layout: StorageLayout,
    batch: str,
    seen: set[str],
    *,
    ratios: Sequence[float],
    include_augmented: bool,
) -> BatchExport:
    """The batch's frames and final annotations; frames already taken from an earlier batch (the
    same file uploaded twice) are left to that batch, so no frame enters a release twice."""
    return batch_export_and_real_frames(
        latest, layout, batch, seen, ratios=ratios, include_augmented=include_augmented
    )[0]


def batch_export_and_real_frames(
    latest: LatestMaterialization,
    layout: StorageLayout,
    batch: str,
    seen: set[str],
    *,
    ratios: Sequence[float],
    include_augmented: bool,
) -> tuple[BatchExport, int]:
    """:func:`batch_export`, and how many of its frames are the batch's own (they come first; the
    augmented copies follow)."""
    frames = read_parquet(layout.manifest("frames", batch))
    annotations = read_parquet(layout.manifest("human_corrections", batch))
    frames = kept_rows = frames[~frames["frame_id"].isin(seen)]
    kept = set(frames["frame_id"])
    annotations = annotations[annotations["frame_id"].isin(kept)]
    seen.update(kept)
    lineage = None
    augmented = augmented_copies(latest, layout, batch, ratios) if include_augmented else None
    if augmented is not None:
        copies, copy_annotations, copy_lineage = augmented
        # Copies follow their source frame: none of a frame that an earlier batch brought.
        copies = copies[
            copies["frame_id"].isin(set(copy_lineage.loc[copy_lineage["source_frame_id"].isin(kept), "frame_id"]))
        ]
        if len(copies):
            frames = pd.concat([frames, copies], ignore_index=True)
            annotations = pd.concat(
                [annotations, copy_annotations[copy_annotations["frame_id"].isin(set(copies["frame_id"]))]],
                ignore_index=True,
            )
            lineage = copy_lineage[copy_lineage["frame_id"].isin(set(copies["frame_id"]))]
    export = BatchExport(
        batch=batch, frames=frames, annotations=annotations, export_dir=layout.exports(batch), lineage=lineage
    )
    return export, len(kept_rows)


def quality_figures(headlines: HeadlineRows, names: list[str]) -> dict[str, object]:
    """Headline QC figures per batch and their mean over the release (for the dataset card)."""
    rows = {batch: headlines[batch] for batch in names if headlines.get(batch)}
    if not rows:
        return {}
    # The gated figures only: the report's table also carries samples, intervals and evidence.
    columns = [column for column in GATED if any(column in row for row in rows.values())]
    values = {batch: {column: figure_number(row.get(column)) for column in columns} for batch, row in rows.items()}
    means = {}
    for column in columns:
        present = [value for figures in values.values() if (value := figures[column]) is not None]
        # pandas' mean (numpy's pairwise sum), as the card always took it: a mean on a rounding tie
        # must round the same way, or the release's version changes.
        means[column] = round(float(pd.Series(present, dtype="float64").mean()), 4) if present else None
    per_batch = {
        batch: {column: None if value is None else round(value, 4) for column, value in figures.items()}
        for batch, figures in values.items()
    }
    return {"mean": means, "per_batch": per_batch}


def quality_record(decisions: Mapping[str, GateDecision], names: list[str], policy: QualityPolicy) -> dict[str, Any]:
    """What the release records about quality: the targets and minimum samples in force, each
    batch's status per figure (``decisions``: :func:`gate_decisions` over at least ``names``), and
    every waiver that let a batch in (release.json and the card)."""
    statuses = {batch: decisions[batch].statuses() if batch in decisions else {} for batch in names}
    used = [
        dataclasses.asdict(w)
        for w in policy.waivers
        if w.batch in names and statuses.get(w.batch, {}).get(w.figure) == "waived"
    ]
    return {
        "targets": dict(policy.targets),
        "min_sample": dict(policy.min_sample),
        "statuses": statuses,
        "waivers": used,
    }
