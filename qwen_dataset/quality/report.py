"""The quality report of a batch: every metric in one place, with targets, plots and files.

Inputs are the pipeline's manifests: the final annotations (``human_corrections``), the AI's
(``ai_annotations``), every human annotation of the batch from the annotation database (both
annotators of double-blind items, so agreement can be measured) and the frames.

A metric with nothing to measure (no double-blind item yet, no GUI sequence) is ``None``: the
gates let it pass, and the report says "no data" rather than inventing a number.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jinja2
import pandas as pd

from qwen_dataset.payloads import BOX_TASKS
from qwen_dataset.quality.action_paths import ActionPathReport, action_completeness_from_annotations
from qwen_dataset.quality.agreement import AgreementReport, agreement_from_annotations
from qwen_dataset.quality.event_agreement import EventAgreementReport, event_agreement_from_annotations
from qwen_dataset.quality.ocr_accuracy import (
    OcrAccuracyReport,
    ocr_accuracy_ai_vs_final,
    ocr_accuracy_between_annotators,
)
from qwen_dataset.quality.targets import QualityTargets
from qwen_dataset.records import AnnotationStatus, Source, Task
from qwen_dataset.store.paths import StoragePath, atomic_write_bytes, atomic_write_text, is_remote


@dataclasses.dataclass
class QcReport:
    batch: str
    targets: QualityTargets
    agreement: dict[str, AgreementReport]  # per task with boxes
    ocr_between_annotators: OcrAccuracyReport | None
    ocr_ai_vs_final: OcrAccuracyReport | None
    actions: ActionPathReport | None
    semantic: Any | None = None  # SemanticReport, when descriptions were double-annotated
    code_fidelity: list[Any] = dataclasses.field(default_factory=list)  # CodeFidelity per item
    events: EventAgreementReport | None = None  # video events of double-annotated videos
    counts: dict[str, Any] = dataclasses.field(default_factory=dict)
    per_annotator: pd.DataFrame | None = None

    def headline(self) -> dict[str, float | None]:
        """The four gated figures (None when there was nothing to measure)."""
        reports = [report for report in self.agreement.values() if report.frames]
        matched = sum(report.matched for report in reports)
        if not reports:
            mean_iou = None  # nothing was double-annotated
        elif matched:
            mean_iou = sum(report.mean_iou * report.matched for report in reports) / matched
        else:
            # Double-annotated, yet no box pairs up: the reports say 0.0 (or 1.0 when both sides
            # left every frame empty); "no data" here would let total disagreement pass the gate.
            mean_iou = min(report.mean_iou for report in reports)
        ocr = self.ocr_between_annotators
        return {
            "mean_iou": mean_iou,
            "ocr_accuracy": ocr.accuracy if ocr is not None and ocr.overall.pairs else None,
            "action_completeness": self.actions.completeness if self.actions and self.actions.sequences else None,
            "semantic_consistency": getattr(self.semantic, "mean", None),
        }

    def figures(self) -> dict[str, float | None]:
        """Headline plus informative figures that are charted but not gated."""
        figures = dict(self.headline())
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
        targets = dataclasses.asdict(self.targets)
        return {key: None if value is None else value > targets[key] for key, value in self.headline().items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "targets": dataclasses.asdict(self.targets),
            "headline": self.headline(),
            "verdicts": self.verdicts(),
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
        "annotators": int(human["author"].nunique()) if len(human) else 0,
        "low_light": int(frames["low_light"].sum()) if len(frames) else 0,
        "low_light_share": float(frames["low_light"].mean()) if len(frames) else None,
        "ai_failed": ai_failed,
        "ai_failure_rate": ai_failed / len(ai) if len(ai) else None,
        "by_task": {str(k): int(v) for k, v in final["task"].value_counts().items()} if len(final) else {},
    }


def _per_annotator(reports: Mapping[str, AgreementReport]) -> pd.DataFrame:
    """Mean IoU of each annotator over the double-blind frames they share with someone."""
    rows = []
    for task, report in reports.items():
        table = report.per_frame
        if table is None or not len(table):
            continue
        for side in ("author_a", "author_b"):
            if side in table.columns and "mean_iou" in table.columns:
                for author, iou in zip(table[side], table["mean_iou"]):
                    rows.append({"task": task, "annotator": author, "mean_iou": iou})
    if not rows:
        return pd.DataFrame(columns=["task", "annotator", "frames", "mean_iou"])
    frame = pd.DataFrame(rows)
    return (
        frame.groupby(["task", "annotator"])
        .agg(frames=("mean_iou", "size"), mean_iou=("mean_iou", "mean"))
        .reset_index()
    )


def build_qc_report(
    batch: str,
    final: pd.DataFrame,
    ai: pd.DataFrame,
    human: pd.DataFrame,
    frames: pd.DataFrame,
    targets: QualityTargets = QualityTargets(),
    semantic: Callable[[pd.DataFrame], Any] | None = None,
    code_fidelity: Callable[[pd.DataFrame, pd.DataFrame], list[Any]] | None = None,
) -> QcReport:
    """Measure every metric for one batch.

    ``semantic`` and ``code_fidelity`` are optional scorers (they need a language model and a
    browser); the caller passes them when the batch has items they apply to.
    """
    people = human[human["source"].isin([Source.HUMAN, Source.ARBITRATED])] if len(human) else human
    agreement = {}
    for task in BOX_TASKS:
        if len(people) and (people["task"] == task).any():
            report = agreement_from_annotations(people, task, per_frame=True)
            if report.frames:
                agreement[task] = report
    has_ocr_pairs = len(people) and (people["task"] == "ocr").any()
    between = ocr_accuracy_between_annotators(people) if has_ocr_pairs else None
    ai_vs_final = ocr_accuracy_ai_vs_final(pd.concat([ai, people], ignore_index=True)) if len(ai) else None
    actions = action_completeness_from_annotations(final, frames) if len(final) else None
    has_video_pairs = len(people) and (people["task"] == Task.VIDEO_EVENT).any()
    events = event_agreement_from_annotations(people) if has_video_pairs else None
    return QcReport(
        batch=batch,
        targets=targets,
        agreement=agreement,
        ocr_between_annotators=between,
        ocr_ai_vs_final=ai_vs_final,
        actions=actions,
        semantic=semantic(people) if semantic is not None and len(people) else None,
        code_fidelity=code_fidelity(final, frames) if code_fidelity is not None and len(final) else [],
        events=events,
        counts=_counts(final, ai, frames, people),
        per_annotator=_per_annotator(agreement),
    )


# ----------------------------------------------------------------------------------------------
# Presentation


def _fmt(value: Any) -> str:
    if value is None:
        return "no data"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_summary(report: QcReport, images: Mapping[str, bytes] | None = None) -> str:
    """A table of the headline figures against their targets, then the plots inline."""
    targets = dataclasses.asdict(report.targets)
    verdicts = report.verdicts()
    lines = ["| metric | value | target | verdict |", "|---|---|---|---|"]
    for key, value in report.headline().items():
        verdict = {None: "no data", True: "pass", False: "FAIL"}[verdicts[key]]
        lines.append(f"| {key} | {_fmt(value)} | > {targets[key]} | {verdict} |")
    lines += ["", "| figure | value |", "|---|---|"]
    for key, value in report.figures().items():
        if key not in targets:
            lines.append(f"| {key} | {_fmt(value)} |")
    counts = {k: v for k, v in report.counts.items() if not isinstance(v, dict)}
    lines += ["", "| count | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in counts.items()]
    if report.actions and report.actions.failures:
        lines += ["", "Action paths that did not complete:", ""]
        lines += [f"- `{code}`: {n}" for code, n in sorted(report.actions.failures.items()) if n]
    for name, png in (images or {}).items():
        lines += ["", f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})"]
    return "\n".join(lines)


def render_plots(report: QcReport) -> dict[str, bytes]:
    """PNG plots: IoU histogram, per-annotator agreement, CER by language (only those with data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, bytes] = {}

    def save(name: str, figure: Any) -> None:
        buffer = io.BytesIO()
        figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=80)
        plt.close(figure)
        plots[name] = buffer.getvalue()

    ious = [
        value
        for agreement in report.agreement.values()
        if agreement.per_frame is not None and "mean_iou" in agreement.per_frame.columns
        for value in agreement.per_frame["mean_iou"].dropna()
    ]
    if ious:
        figure, axis = plt.subplots(figsize=(5, 3))
        axis.hist(ious, bins=20, range=(0, 1), color="#4c72b0")
        axis.axvline(report.targets.mean_iou, color="#c44e52", linestyle="--", label="target")
        axis.set(title="IoU per double-annotated frame", xlabel="mean IoU", ylabel="frames")
        axis.legend()
        save("iou_histogram", figure)
    if report.per_annotator is not None and len(report.per_annotator):
        table = report.per_annotator.groupby("annotator")["mean_iou"].mean().sort_values()
        figure, axis = plt.subplots(figsize=(5, 0.4 * len(table) + 1.2))
        axis.barh(table.index.astype(str), table.values, color="#55a868")
        axis.axvline(report.targets.mean_iou, color="#c44e52", linestyle="--")
        axis.set(title="Agreement per annotator", xlabel="mean IoU", xlim=(0, 1))
        save("per_annotator_agreement", figure)
    languages = {}
    for label, ocr in (("annotators", report.ocr_between_annotators), ("ai_vs_final", report.ocr_ai_vs_final)):
        if ocr is not None:
            for language, score in ocr.by_language.items():
                if score.characters:
                    languages[f"{language} ({label})"] = score.cer
    if languages:
        figure, axis = plt.subplots(figsize=(5, 0.4 * len(languages) + 1.2))
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
_VERDICT_TEXT = {None: "no data", True: "pass", False: "FAIL"}


def html_page(report: QcReport, images: Mapping[str, bytes]) -> str:
    """A self-contained HTML page (``templates/report.html.j2``; plots inlined as data URLs)."""
    targets = dataclasses.asdict(report.targets)
    verdicts = report.verdicts()
    headline = [
        {
            "name": key,
            "value": _fmt(value),
            "target": targets[key],
            "verdict": verdicts[key],
            "verdict_text": _VERDICT_TEXT[verdicts[key]],
        }
        for key, value in report.headline().items()
    ]
    return _TEMPLATES.get_template("report.html.j2").render(
        batch=report.batch,
        headline=headline,
        figures=[(key, _fmt(value)) for key, value in report.figures().items() if key not in targets],
        plots=[{"name": name, "base64": base64.b64encode(png).decode()} for name, png in images.items()],
        details=json.dumps(report.to_dict(), indent=1, ensure_ascii=False, default=str),
    )


def write_report_files(report: QcReport, out_dir: StoragePath, images: Mapping[str, bytes]) -> dict[str, StoragePath]:
    """``<out_dir>/<batch>.json`` and ``<batch>.html`` (plus the PNGs), written atomically."""
    if not is_remote(out_dir):  # object stores have no folders to make
        out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{report.batch}.json",
        "html": out_dir / f"{report.batch}.html",
    }
    atomic_write_text(paths["json"], json.dumps(report.to_dict(), indent=1, ensure_ascii=False, default=str))
    atomic_write_text(paths["html"], html_page(report, images))
    for name, png in images.items():
        paths[name] = out_dir / f"{report.batch}.{name}.png"
        atomic_write_bytes(paths[name], png)
    return paths


def headline_frame(reports: Sequence[QcReport]) -> pd.DataFrame:
    """One row per batch of the headline figures (the gates' input)."""
    return pd.DataFrame([{"batch": r.batch, **r.headline()} for r in reports])
