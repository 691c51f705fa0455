"""Action Sequence DSL: exact round trips over generated sequences, canonical text, clear errors."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from qwen_dataset.exporters.action_dsl import (
    ACTION_TYPES,
    CANONICAL_KEYS,
    DIRECTIONS,
    DslParseError,
    parse,
    quote,
    write,
)
from qwen_dataset.prelabel.templates import AnswerContext, load_template, parse_answer

SPEC_EXAMPLE = (
    'CLICK #login "Login" @[120,80,160,100]\nTYPE #search "AI tutorial"\nSCROLL down 3\nKEY "Enter"\nWAIT 1.5\n'
)


def strict(value: Any) -> Any:
    """``value`` with every number tagged by its type, so 1 and 1.0 (and True) compare unequal."""
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(item) for item in value]
    if isinstance(value, (bool, int, float)):
        return (type(value).__name__, value)
    return value


# --------------------------------------------------------------------------------------------
# Generated sequences

TEXT_PIECES = [
    "Login",
    "AI tutorial",
    "数据标注平台",
    "营业收入同比增长 12%",
    "搜索",
    "こんにちは",
    "😀👍🏽",
    'say "hi"',
    "back\\slash",
    "\\n is not a newline",
    "tab\there",
    "line\nbreak",
    "cr\rlf",
    "\x00\x07\x1b",
    "\u2028\u2029",
    "\u0085",
    "\u3000全角",
    "zero\u200bwidth",
    "\ud800",
    " leading and trailing ",
    "",
    "#not-a-target",
    "@(1,2)",
    "-> @[1,2,3,4]",
    "//",
    '""',
]


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(TEXT_PIECES) for _ in range(rng.randint(1, 3)))


def random_number(rng: random.Random) -> int | float:
    kind = rng.random()
    if kind < 0.3:
        return rng.randint(0, 4000)
    if kind < 0.5:
        return float(rng.randint(0, 4000))  # integral floats must stay floats
    if kind < 0.6:
        return rng.choice([1e-05, 1e16, 2.5e-300, 123456789.123456789, 0.1 + 0.2, -0.0, -3.5])
    return rng.uniform(0, 4000)


def random_target(rng: random.Random) -> int | str | None:
    kind = rng.random()
    if kind < 0.3:
        return None
    if kind < 0.7:
        return rng.randint(0, 50)
    return rng.choice(["login", "search", "e0", "e12", "Dx_aB91ISN", "5Xh-1", "_", "a-b_c"])


def random_action(rng: random.Random) -> dict[str, Any]:
    action_type = rng.choice(ACTION_TYPES)
    action: dict[str, Any] = {
        "type": action_type,
        "target": random_target(rng),
        "point": [random_number(rng), random_number(rng)] if rng.random() < 0.6 else None,
        "end_point": [random_number(rng), random_number(rng)] if rng.random() < 0.3 else None,
        "text": random_text(rng) if rng.random() < 0.6 else None,
        "direction": rng.choice(DIRECTIONS) if rng.random() < 0.3 else None,
    }
    if rng.random() < 0.2:
        action["box"] = [random_number(rng) for _ in range(4)]
    if action_type == "scroll" and rng.random() < 0.5:
        action["amount"] = rng.randint(0, 20)
    if action_type == "wait" and rng.random() < 0.5:
        action["duration"] = random_number(rng)
    return action


def test_parse_of_write_is_exact_for_generated_sequences() -> None:
    rng = random.Random(20260101)
    for _ in range(1500):
        actions = [random_action(rng) for _ in range(rng.randint(0, 6))]
        text = write(actions)
        parsed = parse(text)
        assert strict(parsed) == strict(actions), text
        assert write(parsed) == text  # what write produces is canonical


def test_written_text_has_one_line_per_action_and_is_utf8() -> None:
    rng = random.Random(7)
    for _ in range(300):
        actions = [random_action(rng) for _ in range(rng.randint(1, 5))]
        text = write(actions)
        text.encode("utf-8")  # lone surrogates are escaped, so this never raises
        assert text.endswith("\n")
        assert len(text.splitlines()) == len(actions)  # no newline, NEL or U+2028 inside a line


def test_canonical_gui_payload_actions_round_trip() -> None:
    template = load_template("gui_action")
    payload = parse_answer(template, json.dumps(template.example), AnswerContext(width=1366, height=768))
    actions = payload["actions"]
    assert strict(parse(write(actions))) == strict(actions)
    assert (
        write(actions)
        == 'CLICK #0 @(683.0,176.64000000000001)\nTYPE #0 "wireless headphones"\nCLICK #1 @(1092.8,253.44)\n'
    )
    assert all(set(action) == set(CANONICAL_KEYS) for action in parse(write(actions)))


def test_spec_example_is_canonical_text() -> None:
    actions = parse(SPEC_EXAMPLE)
    assert write(actions) == SPEC_EXAMPLE
    click, type_, scroll, key, wait = actions
    assert click == {
        "type": "click",
        "target": "login",
        "point": None,
        "end_point": None,
        "text": "Login",
        "direction": None,
        "box": [120, 80, 160, 100],
    }
    assert (type_["target"], type_["text"]) == ("search", "AI tutorial")
    assert (scroll["direction"], scroll["amount"]) == ("down", 3)
    assert key["text"] == "Enter"
    assert strict(wait["duration"]) == ("float", 1.5)


def test_drag_end_point_and_numeric_targets() -> None:
    (drag,) = parse("DRAG #3 @(10.5,20) -> @(300,20)\n")
    assert drag["target"] == 3 and drag["point"] == [10.5, 20] and drag["end_point"] == [300, 20]
    assert write([drag]) == "DRAG #3 @(10.5,20) -> @(300,20)\n"


def test_lenient_input_parses_to_the_same_actions_as_canonical_text() -> None:
    loose = '  // a comment\r\n\r\nCLICK\t #login   "Login"  @[ 120 , 80,160 ,100 ]  \r\n\nWAIT 1.5'
    assert parse(loose) == parse('CLICK #login "Login" @[120,80,160,100]\nWAIT 1.5\n')


def test_quote_escapes_only_what_it_must() -> None:
    assert quote("数据 AI") == '"数据 AI"'
    assert quote('a"b\\c\nd\te\u2028\x00') == '"a\\"b\\\\c\\nd\\te\\u2028\\u0000"'
    assert parse('TYPE "\\u00e9\\u4E2D"\n')[0]["text"] == "é中"


@pytest.mark.parametrize(
    ("text", "line", "column", "expected"),
    [
        ("FLY #1\n", 1, 1, "an action verb"),
        ("click #1\n", 1, 1, "verbs are upper case"),
        ('CLICK #1\nTYPE "unterminated\n', 2, 19, "closing the string opened at column 6"),
        ('TYPE "bad \\q escape"\n', 1, 11, "an escape"),
        ('TYPE "\\u12"\n', 1, 9, "4 hexadecimal digits"),
        ("CLICK @(1,2) #3\n", 1, 14, "-> @(x,y) or end of line"),
        ("CLICK #1 5\n", 1, 10, "a bare number only follows SCROLL or WAIT"),
        ("CLICK @(1 2)\n", 1, 11, "','"),
        ("CLICK @[1,2,3]\n", 1, 14, "','"),
        ("CLICK @(1,2\n", 1, 12, "')' closing 2 numbers"),
        ("CLICK#1\n", 1, 6, "a space between fields"),
        ("CLICK # 1\n", 1, 8, "an element index or id"),
        ("SCROLL sideways\n", 1, 8, "a direction"),
        ("SCROLL down 2.5\n", 1, 13, "a whole number"),
        ("DRAG @(1,2) -> (3,4)\n", 1, 16, "'@(' starting the end point"),
        ("WAIT\n\n\nKEY Enter\n", 4, 5, '"text"'),
    ],
)
def test_parse_errors_give_line_column_and_what_was_expected(text: str, line: int, column: int, expected: str) -> None:
    with pytest.raises(DslParseError) as caught:
        parse(text)
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    assert expected in str(error)
    assert str(error).startswith(f"line {line}, column {column}: expected ")


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"type": "fly"}, "type 'fly'"),
        ({"type": "click", "target": "12"}, "target '12'"),
        ({"type": "click", "target": "has space"}, "target 'has space'"),
        ({"type": "click", "target": -1}, "negative"),
        ({"type": "click", "target": True}, "target True"),
        ({"type": "click", "point": [float("nan"), 1.0]}, "not a finite number"),
        ({"type": "click", "point": [1.0]}, "expected 2 numbers"),
        ({"type": "click", "amount": 3}, "not allowed on a 'click'"),
        ({"type": "scroll", "amount": 1.5}, "whole number"),
        ({"type": "scroll", "direction": "sideways"}, "direction 'sideways'"),
        ({"type": "click", "confidence": 0.9}, "unknown key(s) ['confidence']"),
    ],
)
def test_write_refuses_what_it_cannot_write_exactly(action: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="action 0") as caught:
        write([action])
    assert message in str(caught.value)
