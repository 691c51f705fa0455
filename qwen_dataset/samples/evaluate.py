"""How well a batch's annotations match the sample generator's truth, per task.

* ``ocr``: character accuracy of the text lines, spaces counted
  (:func:`qwen_dataset.quality.ocr_truth.score_frames_against_sample_truth`);
* ``gui_action``: element precision and recall at IoU 0.5 (a truth element found when a predicted
  element's box overlaps it at IoU >= 0.5, one-to-one, greedy by IoU; roles not compared, see
  ``role_agreement``), action-path completeness (the sequences replay:
  :func:`qwen_dataset.quality.action_paths.action_completeness`) and target accuracy (the last
  click or type lands on the truth's target element, IoU >= 0.5);
* ``spatial``: object recall at IoU 0.5 and relation accuracy: the share of the truth's relations
  (:data:`qwen_dataset.samples.scene.SCENE_RELATIONS`) the annotation states between the matched
  objects, an inverse predicate counting as its twin (``b right_of a`` states ``a left_of b``,
  ``b overlaps a`` states ``a overlaps b``);
* ``image_to_code``: SSIM and text recall of the rendered HTML (``code_fidelity`` items, from
  :func:`qwen_dataset.quality.code_fidelity.score_image_to_code_items`), when given;
* ``video_event``: event boundary error, the mean distance in seconds from each scene cut of the
  truth to the nearest event boundary.

``rows`` is how many ok annotations of the task the batch holds (what a trainer gets).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from qwen_dataset.geometry import box_iou
from qwen_dataset.prelabel.classical.spatial import INVERSE
from qwen_dataset.quality.action_paths import action_completeness
from qwen_dataset.quality.ocr_truth import score_frames_against_sample_truth, summarize
from qwen_dataset.records import AnnotationStatus, Task
from qwen_dataset.samples.truth import SampleTruth

MATCH_IOU = 0.5
TRUTH_ROLES = {"label": "text", "title": "text"}  # the truth's names for what the template calls text


@dataclasses.dataclass(frozen=True)
class TaskAccuracy:
    """One task's figures against the truth (None: nothing to measure)."""

    task: str
    rows: int
    figures: dict[str, float | None]

    def line(self) -> str:
        shown = ", ".join(f"{name} {_fmt(value)}" for name, value in self.figures.items())
        return f"{self.task:<14} {self.rows:>3} rows  {shown}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def match_boxes(truth: Sequence[Sequence[float]], predicted: Sequence[Sequence[float]]) -> dict[int, int]:
    """``{truth index: predicted index}`` one-to-one at IoU >= 0.5, greedy by IoU."""
    pairs = sorted(
        ((box_iou(t, p), ti, pi) for ti, t in enumerate(truth) for pi, p in enumerate(predicted)), reverse=True
    )
    matched: dict[int, int] = {}
    used: set[int] = set()
    for iou, ti, pi in pairs:
        if iou < MATCH_IOU:
            break
        if ti not in matched and pi not in used:
            matched[ti] = pi
            used.add(pi)
    return matched


def _ok_payloads(final: pd.DataFrame, task: str) -> dict[str, dict[str, Any]]:
    rows = final[(final["task"] == task) & (final["status"] == AnnotationStatus.OK.value)]
    return {row.frame_id: json.loads(row.payload) for row in rows.itertuples(index=False)}


def _image_frames(truth: SampleTruth, uploads: pd.DataFrame, frames: pd.DataFrame) -> dict[str, str]:
    """``{file name: frame_id}`` of the truth's image files."""
    ids = dict(zip(uploads["original_name"], uploads["upload_id"]))
    first = frames[frames["index"] == 0].drop_duplicates("upload_id").set_index("upload_id")["frame_id"]
    return {image.file_name: first[ids[image.file_name]] for image in truth.images if ids.get(image.file_name) in first}


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def gui_accuracy(
    truth: SampleTruth, frame_of: dict[str, str], payloads: dict[str, dict[str, Any]]
) -> dict[str, float | None]:
    found = predicted = expected = same_role = 0
    targets = targets_hit = 0
    sequences = []
    for image in truth.images:
        payload = payloads.get(frame_of.get(image.file_name, ""))
        if not image.elements or payload is None:
            continue
        elements = payload.get("elements") or []
        boxes = [element["bbox"] for element in elements]
        matched = match_boxes([e.bbox for e in image.elements], boxes)
        found, predicted, expected = found + len(matched), predicted + len(boxes), expected + len(image.elements)
        same_role += sum(
            TRUTH_ROLES.get(image.elements[t].role, image.elements[t].role) == elements[p].get("role")
            for t, p in matched.items()
        )
        sequences.append((payload, image.width, image.height))
        if image.target:
            targets += 1
            truth_target = next(e for e in image.elements if e.text == image.target)
            acted = [a for a in payload.get("actions") or [] if a.get("type") in ("click", "type")]
            target = acted[-1].get("target") if acted else None
            if isinstance(target, int) and 0 <= target < len(elements):
                targets_hit += box_iou(truth_target.bbox, elements[target]["bbox"]) >= MATCH_IOU
    report = action_completeness(sequences)
    return {
        "element_precision": _ratio(found, predicted),
        "element_recall": _ratio(found, expected),
        "role_agreement": _ratio(same_role, found),
        "action_completeness": report.completeness if sequences else None,
        "target_accuracy": _ratio(targets_hit, targets),
    }


def _stated(payload: dict[str, Any]) -> set[tuple[int, str, int]]:
    stated = set()
    for relation in payload.get("relations") or []:
        subject, predicate, obj = relation["subject"], relation["predicate"], relation["object"]
        stated.add((subject, predicate, obj))
        if predicate in INVERSE:
            stated.add((obj, INVERSE[predicate], subject))
    return stated


def spatial_accuracy(
    truth: SampleTruth, frame_of: dict[str, str], payloads: dict[str, dict[str, Any]]
) -> dict[str, float | None]:
    objects = found = relations = right = 0
    for image in truth.images:
        payload = payloads.get(frame_of.get(image.file_name, ""))
        if not image.objects or payload is None:
            continue
        matched = match_boxes([o.bbox for o in image.objects], [o["bbox"] for o in payload.get("objects") or []])
        objects, found = objects + len(image.objects), found + len(matched)
        stated = _stated(payload)
        for relation in image.relations:
            relations += 1
            s, o = matched.get(relation.subject), matched.get(relation.object)
            right += s is not None and o is not None and (s, relation.predicate, o) in stated
    return {"object_recall": _ratio(found, objects), "relation_accuracy": _ratio(right, relations)}


def event_accuracy(
    truth: SampleTruth, uploads: pd.DataFrame, payloads_by_upload: dict[str, dict[str, Any]]
) -> dict[str, float | None]:
    ids = dict(zip(uploads["original_name"], uploads["upload_id"]))
    errors = []
    for video in truth.videos:
        payload = payloads_by_upload.get(ids.get(video.file_name, ""))
        if payload is None:
            continue
        boundaries = sorted(
            {float(e["start"]) for e in payload.get("events") or []}
            | {float(e["end"]) for e in payload.get("events") or []}
        )
        for cut in video.scene_cuts:
            errors.append(min((abs(cut - b) for b in boundaries), default=video.duration))
    return {"boundary_error_s": sum(errors) / len(errors) if errors else None}


def evaluate_against_truth(
    truth: SampleTruth,
    uploads: pd.DataFrame,
    frames: pd.DataFrame,
    final: pd.DataFrame,
    code_fidelity: Sequence[Any] = (),
) -> list[TaskAccuracy]:
    """Per task: rows made and accuracy against the truth (see the module docstring)."""
    ok = final[final["status"] == AnnotationStatus.OK.value]
    rows = ok["task"].value_counts().to_dict()
    frame_of = _image_frames(truth, uploads, frames)
    scored = score_frames_against_sample_truth(truth, uploads, frames, final)
    lines = [line for frame in scored.values() for line in frame.lines]
    ocr = summarize(lines) if lines else None
    video_rows = ok[ok["task"] == Task.VIDEO_EVENT.value]
    by_upload = {row.upload_id: json.loads(row.payload) for row in video_rows.itertuples(index=False)}
    code = list(code_fidelity)
    results = [
        TaskAccuracy(
            Task.OCR.value, int(rows.get("ocr", 0)), {"char_accuracy": ocr.accuracy if ocr and ocr.characters else None}
        ),
        TaskAccuracy(
            Task.GUI_ACTION.value,
            int(rows.get("gui_action", 0)),
            gui_accuracy(truth, frame_of, _ok_payloads(final, "gui_action")),
        ),
        TaskAccuracy(
            Task.SPATIAL.value,
            int(rows.get("spatial", 0)),
            spatial_accuracy(truth, frame_of, _ok_payloads(final, "spatial")),
        ),
        TaskAccuracy(
            Task.IMAGE_TO_CODE.value,
            int(rows.get("image_to_code", 0)),
            {
                "ssim": sum(item.ssim for item in code) / len(code) if code else None,
                "text_recall": sum(item.text_recall for item in code) / len(code) if code else None,
            },
        ),
        TaskAccuracy(
            Task.VIDEO_EVENT.value, int(rows.get("video_event", 0)), event_accuracy(truth, uploads, by_upload)
        ),
    ]
    return results
