"""The quality report of a batch: every metric in one place, with targets, plots and files.

Inputs are the pipeline's manifests: the final annotations (``human_corrections``), the AI's
(``ai_annotations``), every human annotation of the batch from the annotation database (both
annotators of double-blind items, so agreement can be measured) and the frames.

A metric with nothing to measure (no double-blind item yet, no GUI sequence) is ``None``: the
gates let it pass, and the report says "no data" rather than inventing a number.

**What is gated.** Each gated figure is measured over what will be exported: on a double-blind
item a reviewer arbitrated, both sides are the reviewer's final version (the disagreement is
resolved, so it agrees with itself), while the annotators' versions as submitted give the *raw*
inter-annotator figure reported beside it (``raw``). Each figure carries its sample (the units it
was measured on: double-blind frames, GUI sequences, description pairs), a 95 % confidence
interval (:mod:`qwen_dataset.quality.intervals`) and the worst units behind it, with their
annotators, so a failure can name the frames to look at.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jinja2
import pandas as pd

from qwen_dataset.payloads import BOX_TASKS
from qwen_dataset.quality.action_paths import ActionPathReport, action_completeness_from_annotations
from qwen_dataset.quality.agreement import AgreementReport, agreement_from_annotations, units
from qwen_dataset.quality.event_agreement import EventAgreementReport, event_agreement_from_annotations
from qwen_dataset.quality.intervals import bootstrap_ratio_interval, wilson_interval
from qwen_dataset.quality.ocr_accuracy import (
    OcrAccuracyReport,
    ocr_accuracy_ai_vs_final,
    ocr_accuracy_between_annotators,
    ocr_frame_scores_between_annotators,
)
from qwen_dataset.quality.targets import DEFAULT_WORKBENCH_URL, GATED, MinimumSample, QualityTargets
from qwen_dataset.records import AnnotationStatus, Source, Task
from qwen_dataset.store.paths import StoragePath, atomic_write_bytes, atomic_write_text, is_remote

#: What one unit of each gated figure's sample is.
SAMPLE_UNITS = {
    "mean_iou": "double-blind frames (per task with boxes)",
    "ocr_accuracy": "double-blind OCR frames",
    "action_completeness": "GUI action sequences",
    "semantic_consistency": "description pairs",
}

CI_METHODS = {
    "mean_iou": "bootstrap over frames",
    "ocr_accuracy": "bootstrap over frames",
    "action_completeness": "Wilson score",
    "semantic_consistency": "bootstrap over pairs",
}

#: Worst units kept per figure (for the gate's message and the report page).
EVIDENCE_ROWS = 5


@dataclasses.dataclass(frozen=True)
class Evidence:
    """One unit behind a figure (a double-blind frame, a sequence, a pair), worst first."""

    frame_id: str
    task: str
    annotators: tuple[str, ...]
    value: float
    detail: str


@dataclasses.dataclass(frozen=True)
class Measurement:
    """A gated figure with its sample, interval and the units that pull it down."""

    name: str
    value: float | None  # over what will be exported (arbitrated items resolved)
    raw: float | None  # annotator vs annotator as submitted
    sample: int
    ci_low: float | None = None
    ci_high: float | None = None
    resolved: int = 0  # units settled by a reviewer's arbitration
    evidence: tuple[Evidence, ...] = ()

    def status(self, target: float, minimum: int) -> str:
        """``no data``, ``insufficient sample``, ``pass`` or ``fail`` (a waiver is the gate's business)."""
        if self.value is None:
            return "no data"
        if self.sample < minimum:
            return "insufficient sample"
        return "pass" if self.value > target else "fail"

    def to_dict(self) -> dict[str, Any]:
        plain = dataclasses.asdict(self)
        plain["evidence"] = [dataclasses.asdict(item) for item in self.evidence]
        plain["unit"] = SAMPLE_UNITS[self.name]
        plain["ci_method"] = CI_METHODS[self.name]
        return plain


STATUS_TEXT = {"pass": "pass", "fail": "FAIL", "insufficient sample": "insufficient sample", "no data": "no data"}


@dataclasses.dataclass
class QcReport:
    batch: str
    targets: QualityTargets
    agreement: dict[str, AgreementReport]  # per task with boxes, annotators' versions as submitted
    ocr_between_annotators: OcrAccuracyReport | None  # as submitted (raw)
    ocr_ai_vs_final: OcrAccuracyReport | None
    actions: ActionPathReport | None
    semantic: Any | None = None  # SemanticReport, when descriptions were double-annotated
    code_fidelity: list[Any] = dataclasses.field(default_factory=list)  # CodeFidelity per item
    events: EventAgreementReport | None = None  # video events of double-annotated videos
    counts: dict[str, Any] = dataclasses.field(default_factory=dict)
    per_annotator: pd.DataFrame | None = None
    measurements: dict[str, Measurement] = dataclasses.field(default_factory=dict)
    min_sample: MinimumSample = MinimumSample()
    frame_names: dict[str, str] = dataclasses.field(default_factory=dict)  # frame id -> file (page/time)

    def headline(self) -> dict[str, float | None]:
        """The four gated figures over what will be exported (None when there was nothing to measure)."""
        return {name: self.measurements[name].value if name in self.measurements else None for name in GATED}

    def statuses(self) -> dict[str, str]:
        """Per gated figure: ``pass``, ``fail``, ``insufficient sample`` or ``no data``."""
        targets, minimum = dataclasses.asdict(self.targets), dataclasses.asdict(self.min_sample)
        return {
            name: self.measurements[name].status(targets[name], minimum[name])
            if name in self.measurements
            else "no data"
            for name in GATED
        }

    def figures(self) -> dict[str, float | None]:
        """Headline plus informative figures that are charted but not gated."""
        figures = dict(self.headline())
        for name in ("mean_iou", "ocr_accuracy", "semantic_consistency"):
            figures[f"{name}_raw"] = self.measurements[name].raw if name in self.measurements else None
        if self.agreement:
            matched = sum(report.matched for report in self.agreement.values())
            iou_sum = sum(report.iou_sum for report in self.agreement.values())
            figures["matched_mean_iou"] = iou_sum / matched if matched else None
        between = self.ocr_between_annotators
        # The headline ocr_accuracy counts spaces; the same pairs without them, labelled as such.
        figures["ocr_accuracy_without_spaces"] = (
            between.accuracy_without_spaces if between is not None and between.overall.pairs else None
        )
        ai = self.ocr_ai_vs_final
        measured = ai if ai is not None and ai.overall.characters else None
        figures["ai_ocr_accuracy"] = measured.accuracy if measured is not None else None
        figures["ai_ocr_accuracy_without_spaces"] = measured.accuracy_without_spaces if measured is not None else None
        if self.code_fidelity:
            figures["code_ssim"] = sum(item.ssim for item in self.code_fidelity) / len(self.code_fidelity)
            figures["code_text_recall"] = sum(item.text_recall for item in self.code_fidelity) / len(self.code_fidelity)
        if self.events is not None and self.events.videos:
            figures["event_tiou"] = self.events.mean_tiou
        for key in ("low_light_share", "ai_failure_rate", "reviewed_share"):
            figures[key] = self.counts.get(key)
        return figures

    def verdicts(self) -> dict[str, bool | None]:
        """True/False for a figure measured on enough units, None for "no data" or "insufficient sample"."""
        return {name: {"pass": True, "fail": False}.get(status) for name, status in self.statuses().items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "targets": dataclasses.asdict(self.targets),
            "min_sample": dataclasses.asdict(self.min_sample),
            "headline": self.headline(),
            "statuses": self.statuses(),
            "verdicts": self.verdicts(),
            "measurements": {name: m.to_dict() for name, m in self.measurements.items()},
            "figures": self.figures(),
            "counts": self.counts,
            "agreement": {task: report.to_metadata() for task, report in self.agreement.items()},
            "ocr_between_annotators": self.ocr_between_annotators.to_metadata()
            if self.ocr_between_annotators
            else None,
            "ocr_ai_vs_final": self.ocr_ai_vs_final.to_metadata() if self.ocr_ai_vs_final else None,
            "actions": self.actions.to_metadata() if self.actions else None,
            "semantic": _plain(self.semantic),
            "code_fidelity": [_plain(item) for item in self.code_fidelity],
            "events": _plain(self.events),
            "per_annotator": [] if self.per_annotator is None else self.per_annotator.to_dict(orient="records"),
        }


def _plain(value: Any) -> Any:
    """A JSON-friendly view of a metric dataclass (arrays and bytes left out)."""
    if value is None:
        return None
    if hasattr(value, "to_metadata"):
        return value.to_metadata()
    if dataclasses.is_dataclass(value):
        return {
            f.name: getattr(value, f.name)
            for f in dataclasses.fields(value)
            if isinstance(getattr(value, f.name), (int, float, str, bool, type(None)))
        }
    return str(value)


def _counts(final: pd.DataFrame, ai: pd.DataFrame, frames: pd.DataFrame, human: pd.DataFrame) -> dict[str, Any]:
    ai_failed = int((ai["status"] == AnnotationStatus.FAILED).sum()) if len(ai) else 0
    reviewed = int(final["reviewed"].astype(bool).sum()) if len(final) else 0
    return {
        "frames": len(frames),
        "annotations": len(final),
        "reviewed": reviewed,
        "unreviewed": len(final) - reviewed,
        "arbitrated": int((final["source"] == Source.ARBITRATED).sum()) if len(final) else 0,
        "reviewed_share": reviewed / len(final) if len(final) else None,
        "human_annotations": len(human),
        # A reviewer's arbitrated version is a decision, not a third annotation.
        "annotators": int(human.loc[human["source"] == Source.HUMAN, "author"].nunique()) if len(human) else 0,
        "reviewers": int(human.loc[human["source"] == Source.ARBITRATED, "author"].nunique()) if len(human) else 0,
        "low_light": int(frames["low_light"].sum()) if len(frames) else 0,
        "low_light_share": float(frames["low_light"].mean()) if len(frames) else None,
        "ai_failed": ai_failed,
        "ai_failure_rate": ai_failed / len(ai) if len(ai) else None,
        "by_task": {str(k): int(v) for k, v in final["task"].value_counts().items()} if len(final) else {},
    }


def _per_annotator(reports: Mapping[str, AgreementReport], ocr_frames: pd.DataFrame | None) -> pd.DataFrame:
    """Per task and annotator, over the double-blind frames they share with someone (as submitted):
    frames, their boxes without a partner, mean IoU (unmatched boxes count as 0) and OCR accuracy."""
    rows = []
    for task, report in reports.items():
        table = report.per_frame
        if table is None or not len(table) or "author_a" not in table.columns:
            continue
        for side, own in (("author_a", "unmatched_a"), ("author_b", "unmatched_b")):
            for row in table.itertuples(index=False):
                rows.append(
                    {
                        "task": task,
                        "annotator": getattr(row, side),
                        "iou_sum": row.iou_sum,
                        "units": row.boxes_a + row.boxes_b - row.matched,
                        "unmatched": getattr(row, own),
                    }
                )
    columns = ["task", "annotator", "frames", "boxes_without_partner", "mean_iou", "ocr_accuracy"]
    if not rows:
        return pd.DataFrame(columns=columns)
    grouped = pd.DataFrame(rows).groupby(["task", "annotator"])
    table = grouped.agg(
        frames=("units", "size"),
        boxes_without_partner=("unmatched", "sum"),
        iou_sum=("iou_sum", "sum"),
        units=("units", "sum"),
    ).reset_index()
    table["mean_iou"] = [s / u if u else 1.0 for s, u in zip(table["iou_sum"], table["units"])]
    table["ocr_accuracy"] = None
    if ocr_frames is not None and len(ocr_frames):
        both = (
            pd.concat(
                [ocr_frames.rename(columns={side: "annotator"}) for side in ("author_a", "author_b")], ignore_index=True
            )
            .groupby("annotator")[["characters", "errors"]]
            .sum()
        )
        accuracy = {name: max(0.0, 1 - e / c) if c else 1.0 for name, c, e in both.itertuples()}
        ocr_rows = table["task"] == Task.OCR.value
        table.loc[ocr_rows, "ocr_accuracy"] = table.loc[ocr_rows, "annotator"].map(accuracy)
    return table[columns]


def resolved_view(people: pd.DataFrame) -> tuple[pd.DataFrame, set[tuple[str, str]]]:
    """The annotators' rows with every arbitrated item's versions replaced by the reviewer's final
    one, and the ``(frame_id, task)`` keys so resolved: what the gated figures compare."""
    if not len(people):
        return people, set()
    arbitrated = (
        people[people["source"] == Source.ARBITRATED]
        .sort_values("created_at")
        .drop_duplicates(["frame_id", "task"], keep="last")
    )
    decided = {
        (f, t): payload for f, t, payload in zip(arbitrated["frame_id"], arbitrated["task"], arbitrated["payload"])
    }
    humans = people[people["source"] == Source.HUMAN].copy()
    if not decided:
        return humans, set()
    keys = list(zip(humans["frame_id"], humans["task"]))
    humans["payload"] = [decided.get(key, payload) for key, payload in zip(keys, humans["payload"])]
    return humans, {key for key in keys if key in decided}


def _iou_measurement(
    raw: Mapping[str, AgreementReport], resolved: Mapping[str, AgreementReport], settled: set[tuple[str, str]]
) -> Measurement | None:
    tables = [(task, r.per_frame) for task, r in resolved.items() if r.per_frame is not None and len(r.per_frame)]
    if not tables:
        return None
    sums = [value for _, table in tables for value in table["iou_sum"]]
    counts = [a + b - m for _, t in tables for a, b, m in zip(t["boxes_a"], t["boxes_b"], t["matched"])]
    total = sum(counts)
    value = sum(sums) / total if total else 1.0
    raw_units = sum(units(report) for report in raw.values())
    raw_value = sum(report.iou_sum for report in raw.values()) / raw_units if raw_units else 1.0
    ci = bootstrap_ratio_interval(sums, counts)
    evidence = []
    for task, report in raw.items():
        table = report.per_frame
        if table is None:
            continue
        for row in table.itertuples(index=False):
            if (row.frame_id, task) in settled:
                continue
            unmatched = row.unmatched_a + row.unmatched_b
            detail = f"{row.matched} matched boxes (IoU {row.matched_mean_iou:.2f}), {unmatched} without a partner"
            if row.label_mismatches:
                detail += f", {row.label_mismatches} with different labels"
            evidence.append(Evidence(row.frame_id, task, (row.author_a, row.author_b), float(row.mean_iou), detail))
    return Measurement(
        "mean_iou",
        value,
        raw_value,
        len(sums),
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
        resolved=sum(1 for key in settled if key[1] in resolved),
        evidence=_worst(evidence),
    )


def _worst(evidence: Sequence[Evidence]) -> tuple[Evidence, ...]:
    return tuple(sorted(evidence, key=lambda item: (item.value, item.frame_id))[:EVIDENCE_ROWS])


def _ocr_measurement(
    raw_frames: pd.DataFrame, resolved_frames: pd.DataFrame, resolved: OcrAccuracyReport, settled: set[tuple[str, str]]
) -> Measurement | None:
    if not len(resolved_frames):
        return None
    ci = bootstrap_ratio_interval(resolved_frames["errors"], resolved_frames["characters"], empty_value=0.0)
    raw_chars, raw_errors = int(raw_frames["characters"].sum()), int(raw_frames["errors"].sum())
    raw_value = max(0.0, 1 - raw_errors / raw_chars) if raw_chars else (1.0 if not raw_errors else 0.0)
    evidence = [
        Evidence(
            row.frame_id,
            Task.OCR.value,
            (row.author_a, row.author_b),
            float(row.accuracy),
            f"{row.errors} character errors over {row.characters} characters",
        )
        for row in raw_frames.itertuples(index=False)
        if (row.frame_id, Task.OCR.value) not in settled
    ]
    return Measurement(
        "ocr_accuracy",
        resolved.accuracy,
        raw_value,
        len(resolved_frames),
        # The interval of the error rate, turned into one of accuracy.
        ci_low=max(0.0, 1 - ci[1]) if ci else None,
        ci_high=max(0.0, 1 - ci[0]) if ci else None,
        resolved=sum(1 for key in settled if key[1] == Task.OCR.value),
        evidence=_worst(evidence),
    )


def _action_measurement(actions: ActionPathReport | None, final: pd.DataFrame) -> Measurement | None:
    if actions is None or not actions.sequences:
        return None
    evidence = []
    if actions.per_sequence is not None:
        rows = final.set_index("annotation_id")
        for sequence in actions.per_sequence.itertuples(index=False):
            if sequence.completed or sequence.sequence_id not in rows.index:
                continue
            row = rows.loc[sequence.sequence_id]
            evidence.append(
                Evidence(
                    str(row["frame_id"]),
                    "gui_action",
                    (str(row["author"]),),
                    0.0,
                    f"{sequence.code} at step {sequence.step}: {sequence.reason}",
                )
            )
    low, high = wilson_interval(actions.completed, actions.sequences)
    return Measurement(
        "action_completeness",
        actions.completeness,
        actions.completeness,
        actions.sequences,
        ci_low=low,
        ci_high=high,
        evidence=_worst(evidence),
    )


def _semantic_measurement(
    resolved: Any | None, raw: Any | None, pairs: Sequence[tuple[str, str]]
) -> Measurement | None:
    """``pairs``: the description pairs ``resolved`` scored (an arbitrated item's pair is the
    reviewer's text twice, so it never shows as evidence)."""
    if resolved is None or not resolved.count:
        return None
    ci = bootstrap_ratio_interval(resolved.per_pair)
    evidence = [
        Evidence("", "description", (), float(score), f"{candidate!r} vs {reference!r}")
        for score, (candidate, reference) in zip(resolved.per_pair, pairs)
    ]
    return Measurement(
        "semantic_consistency",
        resolved.mean,
        raw.mean if raw is not None else resolved.mean,
        resolved.count,
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
        evidence=_worst(evidence),
    )


def _box_agreement(people: pd.DataFrame) -> dict[str, AgreementReport]:
    reports = {}
    for task in BOX_TASKS:
        if len(people) and (people["task"] == task).any():
            report = agreement_from_annotations(people, task, per_frame=True)
            if report.frames:
                reports[task] = report
    return reports


def frame_names(frames: pd.DataFrame, uploads: pd.DataFrame | None) -> dict[str, str]:
    """Frame id -> what a person recognises it by: the file name, with the page or time."""
    names = dict(zip(uploads["upload_id"], uploads["original_name"])) if uploads is not None and len(uploads) else {}
    shown = {}
    for row in frames.itertuples(index=False):
        name = names.get(row.upload_id, str(row.upload_id)[:12])
        if row.kind == "page" and pd.notna(row.page):
            name += f" p. {int(row.page)}"
        elif row.kind == "video_frame" and pd.notna(row.t):
            name += f" at {float(row.t):.1f} s"
        shown[row.frame_id] = name
    return shown


def build_qc_report(
    batch: str,
    final: pd.DataFrame,
    ai: pd.DataFrame,
    human: pd.DataFrame,
    frames: pd.DataFrame,
    targets: QualityTargets = QualityTargets(),
    semantic: Callable[[pd.DataFrame], Any] | None = None,
    code_fidelity: Callable[[pd.DataFrame, pd.DataFrame], list[Any]] | None = None,
    min_sample: MinimumSample = MinimumSample(),
    uploads: pd.DataFrame | None = None,
) -> QcReport:
    """Measure every metric for one batch.

    ``semantic`` and ``code_fidelity`` are optional scorers (they need a language model and a
    browser); the caller passes them when the batch has items they apply to. ``uploads`` (the
    raw_uploads manifest) names the frames by their files.
    """
    people = human[human["source"].isin([Source.HUMAN, Source.ARBITRATED])] if len(human) else human
    resolved_people, settled = resolved_view(people)
    agreement = _box_agreement(people)
    resolved_agreement = _box_agreement(resolved_people) if settled else agreement
    has_ocr_pairs = len(people) and (people["task"] == "ocr").any()
    between = ocr_accuracy_between_annotators(people) if has_ocr_pairs else None
    resolved_between = ocr_accuracy_between_annotators(resolved_people) if has_ocr_pairs and settled else between
    raw_ocr_frames = ocr_frame_scores_between_annotators(people) if has_ocr_pairs else pd.DataFrame()
    resolved_ocr_frames = ocr_frame_scores_between_annotators(resolved_people) if settled else raw_ocr_frames
    ai_vs_final = ocr_accuracy_ai_vs_final(pd.concat([ai, people], ignore_index=True)) if len(ai) else None
    actions = action_completeness_from_annotations(final, frames, per_sequence=True) if len(final) else None
    has_video_pairs = len(people) and (people["task"] == Task.VIDEO_EVENT).any()
    events = event_agreement_from_annotations(people) if has_video_pairs else None
    raw_semantic = semantic(people) if semantic is not None and len(people) else None
    resolved_semantic = semantic(resolved_people) if semantic is not None and settled else raw_semantic
    from qwen_dataset.quality.descriptions import description_pairs

    measured = [
        _iou_measurement(agreement, resolved_agreement, settled),
        _ocr_measurement(raw_ocr_frames, resolved_ocr_frames, resolved_between, settled)
        if resolved_between is not None and resolved_between.overall.pairs
        else None,
        _action_measurement(actions, final),
        _semantic_measurement(
            resolved_semantic, raw_semantic, description_pairs(resolved_people) if len(resolved_people) else []
        ),
    ]
    return QcReport(
        batch=batch,
        targets=targets,
        agreement=agreement,
        ocr_between_annotators=between,
        ocr_ai_vs_final=ai_vs_final,
        actions=actions,
        semantic=raw_semantic,
        code_fidelity=code_fidelity(final, frames) if code_fidelity is not None and len(final) else [],
        events=events,
        counts={**_counts(final, ai, frames, people), "resolved_by_arbitration": len(settled)},
        per_annotator=_per_annotator(agreement, raw_ocr_frames),
        measurements={m.name: m for m in measured if m is not None},
        min_sample=min_sample,
        frame_names=frame_names(frames, uploads),
    )


# ----------------------------------------------------------------------------------------------
# Presentation


def _fmt(value: Any) -> str:
    if value is None:
        return "no data"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _interval(measurement: Measurement | None) -> str:
    if measurement is None or measurement.ci_low is None or measurement.ci_high is None:
        return "-"
    return f"{measurement.ci_low:.3f}-{measurement.ci_high:.3f}"


def headline_rows(report: QcReport) -> list[dict[str, Any]]:
    """One row per gated figure, as the summary, the page and the gate show it."""
    targets, minimum, statuses = (
        dataclasses.asdict(report.targets),
        dataclasses.asdict(report.min_sample),
        report.statuses(),
    )
    rows = []
    for name in GATED:
        measurement = report.measurements.get(name)
        rows.append(
            {
                "name": name,
                "value": _fmt(measurement.value if measurement else None),
                "raw": _fmt(measurement.raw if measurement else None),
                "ci": _interval(measurement),
                "ci_method": CI_METHODS[name],
                "sample": measurement.sample if measurement else 0,
                "min_sample": minimum[name],
                "unit": SAMPLE_UNITS[name],
                "resolved": measurement.resolved if measurement else 0,
                "target": targets[name],
                "status": statuses[name],
                "status_text": STATUS_TEXT[statuses[name]],
                "css": statuses[name].replace(" ", "-"),
            }
        )
    return rows


def markdown_summary(report: QcReport, images: Mapping[str, bytes] | None = None) -> str:
    """A table of the gated figures against their targets (with sample and interval), then the plots inline."""
    # Kept short: the Dagster UI shows a markdown entry inline only below 1,000 characters.
    lines = ["| metric | value | 95 % CI | n (min) | target | verdict |", "|---|---|---|---|---|---|"]
    for row in headline_rows(report):
        lines.append(
            f"| {row['name']} | {row['value']} | {row['ci']} | {row['sample']} ({row['min_sample']}) "
            f"| > {row['target']} | {row['status_text']} |"
        )
    measured = [(key, value) for key, value in report.figures().items() if key not in GATED and value is not None]
    if measured:
        lines += ["", "| figure | value |", "|---|---|"] + [f"| {key} | {_fmt(value)} |" for key, value in measured]
    # Shares and rates are in the figures table already.
    counts = {k: v for k, v in report.counts.items() if not isinstance(v, dict) and not k.endswith(("_share", "_rate"))}
    lines += ["", "| count | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in counts.items()]
    if report.actions and report.actions.failures:
        lines += ["", "Action paths that did not complete:", ""]
        lines += [f"- `{code}`: {n}" for code, n in sorted(report.actions.failures.items()) if n]
    for name, png in (images or {}).items():
        lines += ["", f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})"]
    return "\n".join(lines)


@functools.cache
def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, loaded by the first plot: importing it takes ~0.5 s,
    which a report with nothing to plot (an empty batch) does not pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def render_plots(report: QcReport) -> dict[str, bytes]:
    """PNG plots: IoU histogram, per-annotator agreement, CER by language (only those with data)."""
    plots: dict[str, bytes] = {}

    def save(name: str, figure: Any) -> None:
        buffer = io.BytesIO()
        figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=80)
        _pyplot().close(figure)
        plots[name] = buffer.getvalue()

    ious = [
        value
        for agreement in report.agreement.values()
        if agreement.per_frame is not None and "mean_iou" in agreement.per_frame.columns
        for value in agreement.per_frame["mean_iou"].dropna()
    ]
    if ious:
        figure, axis = _pyplot().subplots(figsize=(5, 3))
        axis.hist(ious, bins=20, range=(0, 1), color="#4c72b0")
        axis.axvline(report.targets.mean_iou, color="#c44e52", linestyle="--", label="target")
        axis.set(title="IoU per double-annotated frame", xlabel="mean IoU", ylabel="frames")
        axis.legend()
        save("iou_histogram", figure)
    if report.per_annotator is not None and len(report.per_annotator):
        table = report.per_annotator.groupby("annotator")["mean_iou"].mean().sort_values()
        figure, axis = _pyplot().subplots(figsize=(5, 0.4 * len(table) + 1.2))
        axis.barh(table.index.astype(str), table.values, color="#55a868")
        axis.axvline(report.targets.mean_iou, color="#c44e52", linestyle="--")
        axis.set(title="Agreement per annotator", xlabel="mean IoU", xlim=(0, 1))
        save("per_annotator_agreement", figure)
    measured = [m for m in report.measurements.values() if m.value is not None]
    if measured:
        figure, axis = _pyplot().subplots(figsize=(6, 0.5 * len(measured) + 1.2))
        targets = dataclasses.asdict(report.targets)
        for position, measurement in enumerate(measured):
            value = float(measurement.value or 0.0)
            low = measurement.ci_low if measurement.ci_low is not None else value
            high = measurement.ci_high if measurement.ci_high is not None else value
            axis.plot([low, high], [position, position], color="#4c72b0", linewidth=3)
            axis.plot([value], [position], "o", color="#4c72b0")
            axis.plot([targets[measurement.name]], [position], "|", color="#c44e52", markersize=18)
        axis.set_yticks(range(len(measured)), [f"{m.name} (n={m.sample})" for m in measured])
        axis.set(title="Gated figures (95 % interval; red: target)", xlim=(0, 1.02))
        save("gated_figures", figure)
    languages = {}
    for label, ocr in (("annotators", report.ocr_between_annotators), ("ai_vs_final", report.ocr_ai_vs_final)):
        if ocr is not None:
            for language, score in ocr.by_language.items():
                if score.characters:
                    languages[f"{language} ({label})"] = score.cer
    if languages:
        figure, axis = _pyplot().subplots(figsize=(5, 0.4 * len(languages) + 1.2))
        axis.barh(list(languages), list(languages.values()), color="#8172b2")
        axis.set(title="CER by language (spaces counted)", xlabel="character error rate")
        save("cer_by_language", figure)
    return plots


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("qwen_dataset.quality", "templates"),
    autoescape=jinja2.select_autoescape(["html", "html.j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def review_link(workbench_url: str, batch: str, frame_id: str, task: str) -> str:
    """The workbench page of the item (review view); item ids are a pure function of batch, frame, task."""
    from qwen_dataset.workbench.assignment import item_id_for

    return f"{workbench_url.rstrip('/')}/review/items/{item_id_for(batch, frame_id, task)}"


def worst_frames(report: QcReport, workbench_url: str = DEFAULT_WORKBENCH_URL) -> list[dict[str, Any]]:
    """The units at or below their figure's target, worst first, with names and workbench links."""
    rows = []
    targets = dataclasses.asdict(report.targets)
    for measurement in report.measurements.values():
        # Only what pulls the figure down: units at or below the figure's target.
        for item in (e for e in measurement.evidence if e.value <= targets[measurement.name]):
            rows.append(
                {
                    "figure": measurement.name,
                    "frame_id": item.frame_id,
                    "name": report.frame_names.get(item.frame_id, item.frame_id[:12]),
                    "task": item.task,
                    "annotators": " vs ".join(item.annotators),
                    "value": f"{item.value:.3f}",
                    "detail": item.detail,
                    "link": review_link(workbench_url, report.batch, item.frame_id, item.task) if item.frame_id else "",
                }
            )
    return rows


def _table(frame: pd.DataFrame | None) -> dict[str, Any]:
    if frame is None or not len(frame):
        return {"columns": [], "rows": []}
    return {
        "columns": list(frame.columns),
        "rows": [[_fmt(value) for value in row] for row in frame.itertuples(index=False)],
    }


def language_table(report: QcReport) -> pd.DataFrame:
    """Per language: characters and accuracy between annotators and of the AI against the final text."""
    rows = []
    for language in sorted(
        set(report.ocr_between_annotators.by_language if report.ocr_between_annotators else {})
        | set(report.ocr_ai_vs_final.by_language if report.ocr_ai_vs_final else {})
    ):
        between = report.ocr_between_annotators.by_language.get(language) if report.ocr_between_annotators else None
        ai = report.ocr_ai_vs_final.by_language.get(language) if report.ocr_ai_vs_final else None
        rows.append(
            {
                "language": language,
                "characters (annotators)": between.characters if between else 0,
                "accuracy between annotators": between.accuracy if between and between.characters else None,
                "characters (AI vs final)": ai.characters if ai else 0,
                "AI accuracy vs final": ai.accuracy if ai and ai.characters else None,
            }
        )
    return pd.DataFrame(rows)


def html_page(
    report: QcReport,
    images: Mapping[str, bytes],
    thumbnails: Mapping[str, bytes] | None = None,
    workbench_url: str = DEFAULT_WORKBENCH_URL,
    json_name: str = "",
) -> str:
    """A self-contained page (``templates/report.html.j2``): headline figures against their targets,
    plots, per-annotator and per-language tables, the worst frames with thumbnails (JPEG bytes per
    frame id, inlined) and links into the workbench; the raw JSON is the file ``json_name`` beside it."""
    thumbnails = thumbnails or {}
    worst = worst_frames(report, workbench_url)
    for row in worst:
        picture = thumbnails.get(row["frame_id"])
        row["thumbnail"] = base64.b64encode(picture).decode() if picture else ""
    counts = [(key, _fmt(value)) for key, value in report.counts.items() if not isinstance(value, dict)]
    return _TEMPLATES.get_template("report.html.j2").render(
        batch=report.batch,
        headline=headline_rows(report),
        figures=[(key, _fmt(value)) for key, value in report.figures().items() if key not in GATED],
        counts=counts,
        plots=[{"name": name, "base64": base64.b64encode(png).decode()} for name, png in images.items()],
        worst=worst,
        per_annotator=_table(report.per_annotator),
        languages=_table(language_table(report)),
        action_failures=sorted((report.actions.failures if report.actions else {}).items()),
        json_name=json_name or f"{report.batch}.json",
        workbench_url=workbench_url,
    )


THUMBNAIL_SIZE = (160, 110)


def thumbnails_of(report: QcReport, picture_of: Callable[[str], Any]) -> dict[str, bytes]:
    """Small JPEGs of the frames the report's evidence names (``picture_of(frame_id)``: a local path or None)."""
    from PIL import Image

    shown: dict[str, bytes] = {}
    for measurement in report.measurements.values():
        for item in measurement.evidence:
            if not item.frame_id or item.frame_id in shown:
                continue
            path = picture_of(item.frame_id)
            if path is None:
                continue
            try:
                with Image.open(path) as picture:
                    small = picture.convert("RGB")
                    small.thumbnail(THUMBNAIL_SIZE)
                    buffer = io.BytesIO()
                    small.save(buffer, format="JPEG", quality=80)
            except (OSError, ValueError):
                continue  # a missing or unreadable picture leaves the row without a thumbnail
            shown[item.frame_id] = buffer.getvalue()
    return shown


def write_report_files(
    report: QcReport,
    out_dir: StoragePath,
    images: Mapping[str, bytes],
    thumbnails: Mapping[str, bytes] | None = None,
    workbench_url: str = DEFAULT_WORKBENCH_URL,
) -> dict[str, StoragePath]:
    """``<out_dir>/<batch>.json`` (every figure: the page's download) and ``<batch>.html`` (plus the
    PNGs), written atomically."""
    if not is_remote(out_dir):  # object stores have no folders to make
        out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{report.batch}.json",
        "html": out_dir / f"{report.batch}.html",
    }
    atomic_write_text(paths["json"], json.dumps(report.to_dict(), indent=1, ensure_ascii=False, default=str))
    atomic_write_text(paths["html"], html_page(report, images, thumbnails, workbench_url, paths["json"].name))
    for name, png in images.items():
        paths[name] = out_dir / f"{report.batch}.{name}.png"
        atomic_write_bytes(paths[name], png)
    return paths


def headline_frame(reports: Sequence[QcReport]) -> pd.DataFrame:
    """One row per batch: the gated figures (the gates' input), and per figure its raw value,
    sample, interval and evidence (``<figure>_raw``, ``_sample``, ``_ci_low``, ``_ci_high``;
    ``evidence`` is JSON: figure -> the worst units, each with frame, file, task and annotators)."""
    rows = []
    for report in reports:
        row: dict[str, Any] = {"batch": report.batch, **report.headline()}
        evidence: dict[str, list[dict[str, Any]]] = {}
        for name in GATED:
            measurement = report.measurements.get(name)
            row[f"{name}_raw"] = measurement.raw if measurement else None
            row[f"{name}_sample"] = measurement.sample if measurement else 0
            row[f"{name}_ci_low"] = measurement.ci_low if measurement else None
            row[f"{name}_ci_high"] = measurement.ci_high if measurement else None
            row[f"{name}_resolved"] = measurement.resolved if measurement else 0
            if measurement and measurement.evidence:
                evidence[name] = [
                    {**dataclasses.asdict(item), "name": report.frame_names.get(item.frame_id, "")}
                    for item in measurement.evidence
                ]
        row["evidence"] = json.dumps(evidence, ensure_ascii=False)
        rows.append(row)
    return pd.DataFrame(rows)
