"""Prelabel templates for Qwen3-VL: loading, checking, and parsing answers into canonical payloads.

A template is a folder under ``qwen_dataset/prelabel/templates/<task>/`` that an admin may edit:
``template.yaml`` (version, frame kinds it applies to, token budget, optional system prompt),
``prompt.txt``, ``schema.json`` (sent to vLLM as the structured-output schema) and ``example.json``
(an answer that must validate). :func:`load_template` checks all of it and names the file to fix.

The model answers in Qwen3-VL's native conventions: ``bbox_2d`` ``[x1, y1, x2, y2]`` and
``point_2d`` ``[x, y]`` as integers relative to the image on a 0-1000 scale. Because the scale is
relative, an answer about a downscaled copy converts exactly to pixels of the original frame:
:func:`parse_answer` always converts with the ORIGINAL frame's width and height.

Parsing turns the model's text into a canonical payload or raises :class:`AnswerError` with a
short code (``invalid_json``, ``schema_violation``, ``unknown_label``, ``out_of_range``,
``bad_reference``) and a reason.

>>> template = load_template("ocr")
>>> parse_answer(template, '```json\\n{"lines": [{"bbox_2d": [0, 0, 500, 100], "text_content": "Hi",'
...              ' "language": "en", "font_style": "bold", "reading_order": 0}]}\\n```',
...              AnswerContext(width=1920, height=1080))["regions"][0]["bbox"]
[0.0, 0.0, 960.0, 108.0]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import string
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import best_match

from qwen_dataset.geometry import QWEN_SCALE, from_qwen_1000, point_from_qwen_1000
from qwen_dataset.payloads import TASK_ORDER, walk_layout

TEMPLATES_DIR = Path(__file__).with_name("templates")


FRAME_KINDS = frozenset({"image", "page", "video_frame"})

DEFAULT_GUI_INSTRUCTION = "Describe the next action to complete the main task"

_TEMPLATE_FILES = ("template.yaml", "prompt.txt", "schema.json", "example.json")
_MAX_LAYOUT_DEPTH = 32


class TemplateError(ValueError):
    """A template folder is missing, malformed or inconsistent; the message names the file to fix."""


class AnswerError(ValueError):
    """The model's answer is unusable. ``code`` is a short machine-readable class of the problem."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class AnswerContext:
    """What a parser needs besides the answer: the ORIGINAL frame size and task parameters."""

    width: float
    height: float
    instruction: str = ""
    # video_event: the span of timestamps the request showed, and how far past it an event may end.
    window_start: float = 0.0
    window_end: float = 0.0
    window_slack: float = 0.0


@dataclasses.dataclass(frozen=True)
class Template:
    """One task's prompt, schema and settings, as loaded and checked from its folder."""

    task: str
    version: str
    description: str
    applies_to: tuple[str, ...]
    max_tokens: int
    system: str
    prompt: str
    schema: dict[str, Any] = dataclasses.field(compare=False)
    example: dict[str, Any] = dataclasses.field(compare=False)
    digest: str = ""
    validator: jsonschema.protocols.Validator | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def version_tag(self) -> str:
        """``<version>+<content hash>``: recorded on every annotation as its template version."""
        return f"{self.version}+{self.digest[:8]}"

    def render_prompt(self, instruction: str = DEFAULT_GUI_INSTRUCTION) -> str:
        """The user prompt with ``$instruction`` filled in."""
        return string.Template(self.prompt).safe_substitute(instruction=instruction)


# --------------------------------------------------------------------------------------------
# Loading


def _present(root: Path) -> set[str]:
    return {child.name for child in root.iterdir() if (child / "template.yaml").is_file()} if root.is_dir() else set()


def available_tasks(directory: Path | None = None) -> list[str]:
    """Tasks with a template, in run order: the packaged ones plus any under ``directory``."""
    present = _present(TEMPLATES_DIR) | (_present(Path(directory)) if directory else set())
    return [task for task in TASK_ORDER if task in present]


def template_folder(task: str, directory: Path | None = None) -> Path:
    """``<directory>/<task>/`` when an admin put an edited copy there, else the packaged folder."""
    if directory and (Path(directory) / task).is_dir():
        return Path(directory) / task
    return TEMPLATES_DIR / task


def load_templates(tasks: Iterable[str] | None = None, directory: Path | None = None) -> dict[str, Template]:
    """Load and check the named templates (default: all), keyed by task, in run order.

    ``directory`` holds edited templates; a task without a folder there uses the packaged one.
    """
    names = list(tasks) if tasks is not None else available_tasks(directory)
    unknown = [name for name in names if name not in TASK_ORDER]
    if unknown:
        raise TemplateError(f"unknown task(s) {unknown}: the tasks are {list(TASK_ORDER)}")
    if not names:
        raise TemplateError("no templates selected: name at least one of " + ", ".join(TASK_ORDER))
    ordered = [task for task in TASK_ORDER if task in names]
    return {task: load_template(task, directory) for task in ordered}


def load_template(task: str, directory: Path | None = None) -> Template:
    """Load the task's template folder (see :func:`template_folder`) and check it: schema valid,
    example valid, fields sane."""
    if task not in TASK_ORDER:
        raise TemplateError(f"unknown task {task!r}: the tasks are {list(TASK_ORDER)}")
    folder = template_folder(task, directory)
    missing = [name for name in _TEMPLATE_FILES if not (folder / name).is_file()]
    if missing:
        raise TemplateError(
            f"template {task!r} in {folder} lacks {missing}; each template folder needs {list(_TEMPLATE_FILES)}"
        )
    raw = {name: (folder / name).read_bytes() for name in _TEMPLATE_FILES}
    meta = _load_yaml(folder / "template.yaml", raw["template.yaml"])
    schema = _load_json(folder / "schema.json", raw["schema.json"])
    example = _load_json(folder / "example.json", raw["example.json"])
    prompt = raw["prompt.txt"].decode("utf-8").strip()
    _check_meta(folder / "template.yaml", meta, task)
    validator = _compile_schema(folder / "schema.json", schema)
    template = Template(
        task=task,
        version=str(meta["version"]),
        description=str(meta.get("description", "")).strip(),
        applies_to=tuple(meta["applies_to"]),
        max_tokens=int(meta["max_tokens"]),
        system=str(meta.get("system") or "").strip(),
        prompt=prompt,
        schema=schema,
        example=example,
        digest=_digest(raw),
        validator=validator,
    )
    if not prompt:
        raise TemplateError(f"{folder / 'prompt.txt'} is empty: write the prompt the model receives")
    _check_example(folder / "example.json", template)
    return template


def _load_yaml(path: Path, data: bytes) -> dict[str, Any]:
    return _load_mapping(
        path,
        data,
        yaml.safe_load,
        yaml.YAMLError,
        "YAML",
        "a YAML mapping (task, version, applies_to, max_tokens, ...)",
    )


def _load_json(path: Path, data: bytes) -> dict[str, Any]:
    return _load_mapping(path, data, json.loads, json.JSONDecodeError, "JSON", "a JSON object")


def _load_mapping(
    path: Path,
    data: bytes,
    parse: Callable[[bytes], Any],
    error_type: type[Exception],
    language: str,
    expected: str,
) -> dict[str, Any]:
    """``data`` parsed, or a :class:`TemplateError` naming the file and what it must hold."""
    try:
        loaded = parse(data)
    except error_type as error:
        raise TemplateError(f"{path} is not valid {language}: {error}") from error
    if not isinstance(loaded, dict):
        raise TemplateError(f"{path} must hold {expected}")
    return loaded


def _check_meta(path: Path, meta: dict[str, Any], task: str) -> None:
    if meta.get("task") != task:
        raise TemplateError(f"{path}: 'task' is {meta.get('task')!r} but the folder is {task!r}; they must match")
    if not str(meta.get("version", "")).strip():
        raise TemplateError(f"{path}: set 'version' (e.g. \"1.0\") and bump it when you change the template")
    kinds = meta.get("applies_to")
    if not isinstance(kinds, list) or not kinds or not set(kinds) <= FRAME_KINDS:
        raise TemplateError(f"{path}: 'applies_to' must be a non-empty list drawn from {sorted(FRAME_KINDS)}")
    max_tokens = meta.get("max_tokens")
    if not isinstance(max_tokens, int) or max_tokens <= 0:
        raise TemplateError(f"{path}: 'max_tokens' must be a positive integer")


def _compile_schema(path: Path, schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as error:
        raise TemplateError(f"{path} is not a valid JSON Schema: {error.message}") from error
    if schema.get("type") != "object":
        raise TemplateError(f'{path}: the answer\'s top level must be an object ("type": "object")')
    return validator_class(schema)


def _check_example(path: Path, template: Template) -> None:
    context = AnswerContext(width=1000, height=1000, window_start=0.0, window_end=1e9)
    try:
        parse_answer(template, json.dumps(template.example), context)
    except AnswerError as error:
        raise TemplateError(f"{path} does not pass the template's own checks: {error}") from error


def _digest(raw: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in _TEMPLATE_FILES:
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(raw[name])
        digest.update(b"\0")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Parsing answers

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)


def strip_code_fences(text: str) -> str:
    """The JSON inside a Markdown code fence (Qwen often wraps answers in one), else the text."""
    match = _FENCE.search(text)
    if match:
        return match.group(1).strip()
    stripped = text.strip()
    if stripped.startswith("```"):  # an answer cut off before its closing fence
        return stripped.split("\n", 1)[1] if "\n" in stripped else ""
    return stripped


def load_answer_json(text: str) -> Any:
    """Fences stripped, then ``json.loads``; :class:`AnswerError` ``invalid_json`` if that fails."""
    body = strip_code_fences(text or "")
    if not body:
        raise AnswerError("invalid_json", "the answer is empty")
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise AnswerError("invalid_json", f"{error.msg} at line {error.lineno} column {error.colno}") from error


def validate_answer(template: Template, answer: Any) -> None:
    """Check the answer against the template's schema, classifying the first problem found."""
    validator = template.validator or jsonschema.Draft202012Validator(template.schema)
    error = best_match(validator.iter_errors(answer))
    if error is None:
        return
    where = error.json_path
    keyword = error.validator
    if keyword == "enum" or _is_enum_branch_failure(error):
        raise AnswerError("unknown_label", f"{where}: {_short(error.instance)} is not one of the allowed labels")
    if keyword in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        raise AnswerError("out_of_range", f"{where}: {error.message}")
    raise AnswerError("schema_violation", f"{where}: {_short_message(error.message)}")


def _is_enum_branch_failure(error: jsonschema.ValidationError) -> bool:
    # A nullable enum is an anyOf of {enum} and {null}; the label case shows up as an enum sub-error.
    return error.validator == "anyOf" and any(sub.validator == "enum" for sub in error.context or [])


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_message(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def parse_answer(template: Template, text: str, context: AnswerContext) -> dict[str, Any]:
    """The model's raw text -> canonical payload, or :class:`AnswerError` saying what is wrong.

    Steps: strip ```json fences, ``json.loads``, validate against the schema, check ranges and
    references the schema cannot express, convert 0-1000 coordinates to pixels of the original
    ``context.width`` x ``context.height`` frame.
    """
    answer = load_answer_json(text)
    validate_answer(template, answer)
    return CONVERTERS[template.task](answer, context)


# --------------------------------------------------------------------------------------------
# Range checks and conversions


def check_bbox_2d(box: Sequence[float], where: str) -> None:
    """A Qwen 0-1000 box must lie on the scale with ``x1 < x2`` and ``y1 < y2``."""
    if len(box) != 4:
        raise AnswerError("schema_violation", f"{where}: a bbox_2d has 4 numbers, got {len(box)}")
    if any(not 0 <= value <= QWEN_SCALE for value in box):
        raise AnswerError("out_of_range", f"{where}: {list(box)} leaves the 0-{QWEN_SCALE} scale")
    x1, y1, x2, y2 = box
    if not (x1 < x2 and y1 < y2):
        raise AnswerError("out_of_range", f"{where}: {list(box)} is empty or inverted (needs x1 < x2 and y1 < y2)")


def check_point_2d(point: Sequence[float], where: str) -> None:
    if len(point) != 2:
        raise AnswerError("schema_violation", f"{where}: a point_2d has 2 numbers, got {len(point)}")
    if any(not 0 <= value <= QWEN_SCALE for value in point):
        raise AnswerError("out_of_range", f"{where}: {list(point)} leaves the 0-{QWEN_SCALE} scale")


def bbox_to_pixels(box: Sequence[float], context: AnswerContext, where: str) -> list[float]:
    """Checked 0-1000 box -> pixels of the original frame."""
    check_bbox_2d(box, where)
    return from_qwen_1000(box, context.width, context.height)


def point_to_pixels(point: Sequence[float] | None, context: AnswerContext, where: str) -> list[float] | None:
    if point is None:
        return None
    check_point_2d(point, where)
    return point_from_qwen_1000(point, context.width, context.height)


def _rank(values: Sequence[int]) -> list[int]:
    """Renumber ``values`` to 0..n-1 keeping their order (ties keep list order)."""
    order = sorted(range(len(values)), key=lambda index: (values[index], index))
    ranks = [0] * len(values)
    for rank, index in enumerate(order):
        ranks[index] = rank
    return ranks


def ocr_payload(answer: dict[str, Any], context: AnswerContext) -> dict[str, Any]:
    """``{"lines": [...]}`` -> ``{"regions": [{bbox, text, confidence, language, font_style, reading_order}]}``.

    ``confidence`` is ``None``: a VLM gives no calibrated per-line confidence (RapidOCR does).
    ``reading_order`` is re-ranked to 0..n-1 keeping the model's order, and the list is sorted by
    it (as the RapidOCR backend's is).
    """
    lines = answer["lines"]
    ranks = _rank([line["reading_order"] for line in lines])
    regions = []
    for index, (line, rank) in enumerate(zip(lines, ranks)):
        regions.append(
            {
                "bbox": bbox_to_pixels(line["bbox_2d"], context, f"$.lines[{index}].bbox_2d"),
                "text": line["text_content"],
                "confidence": None,
                "language": line["language"],
                "font_style": line["font_style"],
                "reading_order": rank,
            }
        )
    return {"regions": sorted(regions, key=lambda region: region["reading_order"])}


_ACTION_NEEDS = {
    "click": ("point_2d",),
    "long_press": ("point_2d",),
    "drag": ("point_2d", "end_point_2d"),
    "type": ("text",),
    "key": ("text",),
    "scroll": ("direction",),
    "wait": (),
}


def gui_action_payload(answer: dict[str, Any], context: AnswerContext) -> dict[str, Any]:
    """Elements and actions -> pixel boxes/points; targets must index the element list.

    Payload: ``{"elements": [{bbox, role, text}], "instruction": <what the model says the actions
    do>, "requested_instruction": <the instruction sent>, "actions": [{type, target, point,
    end_point, text, direction}]}`` (``target`` is an element index or ``None``).
    """
    elements = [
        {
            "bbox": bbox_to_pixels(element["bbox_2d"], context, f"$.elements[{index}].bbox_2d"),
            "role": element["role"],
            "text": element["text"],
        }
        for index, element in enumerate(answer["elements"])
    ]
    actions = []
    for index, action in enumerate(answer["actions"]):
        where = f"$.actions[{index}]"
        for field in _ACTION_NEEDS[action["type"]]:
            if action[field] in (None, ""):
                raise AnswerError("schema_violation", f"{where}: a {action['type']!r} action needs {field!r}")
        target = action["target"]
        if target is not None and not 0 <= target < len(elements):
            raise AnswerError(
                "bad_reference", f"{where}.target: {target} is not an index into {len(elements)} element(s)"
            )
        actions.append(
            {
                "type": action["type"],
                "target": target,
                "point": point_to_pixels(action["point_2d"], context, f"{where}.point_2d"),
                "end_point": point_to_pixels(action["end_point_2d"], context, f"{where}.end_point_2d"),
                "text": action["text"],
                "direction": action["direction"],
            }
        )
    return {
        "elements": elements,
        "instruction": answer["instruction"].strip() or context.instruction,
        "requested_instruction": context.instruction,
        "actions": actions,
    }


def spatial_payload(answer: dict[str, Any], context: AnswerContext) -> dict[str, Any]:
    """Objects, relations and depth order; every index must point at an object."""
    objects = [
        {
            "bbox": bbox_to_pixels(item["bbox_2d"], context, f"$.objects[{index}].bbox_2d"),
            "label": item["label"],
            "occluded": item["occluded"],
        }
        for index, item in enumerate(answer["objects"])
    ]
    count = len(objects)
    relations = []
    for index, relation in enumerate(answer["relations"]):
        subject, obj = relation["subject"], relation["object"]
        for name, value in (("subject", subject), ("object", obj)):
            if not 0 <= value < count:
                raise AnswerError(
                    "bad_reference", f"$.relations[{index}].{name}: {value} is not an index into {count} object(s)"
                )
        if subject == obj:
            raise AnswerError("bad_reference", f"$.relations[{index}]: an object cannot relate to itself ({subject})")
        relations.append({"subject": subject, "predicate": relation["predicate"], "object": obj})
    depth_order = list(answer["depth_order"])
    bad = [value for value in depth_order if not 0 <= value < count]
    if bad:
        raise AnswerError("bad_reference", f"$.depth_order: {bad} are not indices into {count} object(s)")
    if len(set(depth_order)) != len(depth_order):
        raise AnswerError("bad_reference", "$.depth_order: an object appears more than once")
    return {"objects": objects, "relations": relations, "depth_order": depth_order}


def image_to_code_payload(answer: dict[str, Any], context: AnswerContext) -> dict[str, Any]:
    """HTML plus the layout tree with pixel boxes."""
    html = answer["html"].strip()
    if "<" not in html:
        raise AnswerError("schema_violation", "$.html: the answer holds no HTML markup")
    nodes: list[dict[str, Any]] = []
    for _, parent, depth, node, where in walk_layout(answer["layout"]):
        if depth > _MAX_LAYOUT_DEPTH:
            raise AnswerError("schema_violation", f"{where}: the layout tree is deeper than {_MAX_LAYOUT_DEPTH} levels")
        converted = {
            "tag": node["tag"],
            "role": node["role"],
            "bbox": bbox_to_pixels(node["bbox_2d"], context, f"{where}.bbox_2d"),
            "children": [],
        }
        if parent is not None:
            nodes[parent]["children"].append(converted)
        nodes.append(converted)
    return {"html": html, "layout": nodes[0]}


def video_event_payload(answer: dict[str, Any], context: AnswerContext) -> dict[str, Any]:
    """Events of one request window, times checked against the timestamps it showed.

    Returns ``{"events": [{start, end, description}]}`` in seconds as the model gave them; the
    backend merges windows, aligns boundaries (:mod:`qwen_dataset.prelabel.video_events`) and adds frame ids.
    """
    low = max(0.0, context.window_start - context.window_slack)
    high = context.window_end + context.window_slack
    events = []
    for index, event in enumerate(answer["events"]):
        start, end = float(event["start"]), float(event["end"])
        where = f"$.events[{index}]"
        if start > end:
            raise AnswerError("out_of_range", f"{where}: start {start} is after end {end}")
        if start < low or end > high:
            raise AnswerError(
                "out_of_range", f"{where}: [{start}, {end}] s lies outside the frames shown ({low:.2f}-{high:.2f} s)"
            )
        events.append({"start": start, "end": end, "description": event["description"].strip()})
    return {"events": events}


CONVERTERS: dict[str, Callable[[dict[str, Any], AnswerContext], dict[str, Any]]] = {
    "ocr": ocr_payload,
    "gui_action": gui_action_payload,
    "spatial": spatial_payload,
    "image_to_code": image_to_code_payload,
    "video_event": video_event_payload,
}
