"""Action Sequence DSL: GUI action sequences as short, line-oriented text.

One action per line, fields in a fixed order, every field optional except the verb::

    CLICK #login "Login" @[120,80,160,100]
    TYPE #search "AI tutorial"
    SCROLL down 3
    KEY "Enter"
    WAIT 1.5
    DRAG #3 @(10.5,20) -> @(300,20)

The data model is the ``actions`` list of the canonical ``gui_action`` payload (see
:func:`qwen_dataset.prelabel.templates.gui_action_payload`): each action is a dict with the keys
``type, target, point, end_point, text, direction`` (``None`` when absent; coordinates in
pixels of the frame), plus three optional keys the DSL can also carry and a payload may omit:
``box`` (``[x1, y1, x2, y2]`` pixels of the element acted on), ``amount`` (how many steps a
SCROLL goes, an integer) and ``duration`` (seconds a WAIT lasts).

Guarantees (tested over thousands of generated sequences):

* ``parse(write(actions)) == actions`` exactly, number types included (``960`` stays an int,
  ``960.0`` a float), for any text (quotes, backslashes, newlines, control characters, Chinese);
* ``write(parse(text)) == text`` for canonical text, i.e. text as :func:`write` produces it
  (single spaces, no spaces inside brackets, shortest float form, a newline after each line).

The parser is lenient where it costs nothing (extra spaces, ``\\r\\n`` line ends, blank lines,
``//`` comment lines) and otherwise stops at the first problem with a :class:`DslParseError`
carrying the 1-based ``line`` and ``column`` and saying what it expected there. The grammar,
in EBNF, is in ``docs/formats.md``.

>>> text = write([{"type": "click", "target": 0, "point": [500.0, 230.0], "end_point": None,
...                "text": None, "direction": None}])
>>> text
'CLICK #0 @(500.0,230.0)\\n'
>>> parse(text)[0]["point"]
[500.0, 230.0]
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: The canonical keys of an action, always present in what :func:`parse` returns.
CANONICAL_KEYS: tuple[str, ...] = ("type", "target", "point", "end_point", "text", "direction")
#: Optional keys, present in what :func:`parse` returns only when the line carries them.
OPTIONAL_KEYS: tuple[str, ...] = ("box", "amount", "duration")

ACTION_TYPES: tuple[str, ...] = ("click", "type", "scroll", "long_press", "drag", "key", "wait")
DIRECTIONS: tuple[str, ...] = ("up", "down", "left", "right")
_KNOWN_KEYS = frozenset(CANONICAL_KEYS + OPTIONAL_KEYS)
VERBS: dict[str, str] = {action_type.upper(): action_type for action_type in ACTION_TYPES}

# The bare number after the direction slot means a scroll's amount or a wait's duration.
_NUMBER_KEY = {"scroll": "amount", "wait": "duration"}

_SLOTS = ("target", "text", "direction", "number", "box", "point", "end_point")
_REF = re.compile(r"[A-Za-z0-9_-]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z_]+")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
_WRITE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Characters written as \uXXXX: controls, line/paragraph separators (editors and
# str.splitlines() break lines at them) and lone surrogates (not encodable as UTF-8).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})


class DslParseError(ValueError):
    """A line of DSL text that does not follow the grammar.

    ``line`` and ``column`` are 1-based and point at the first character that does not fit;
    ``expected`` says what the parser wanted there.
    """

    def __init__(self, line: int, column: int, expected: str, found: str) -> None:
        super().__init__(f"line {line}, column {column}: expected {expected}, found {found}")
        self.line = line
        self.column = column
        self.expected = expected
        self.found = found


# --------------------------------------------------------------------------------------------
# Writing


def write(actions: Iterable[Mapping[str, Any]]) -> str:
    """Canonical DSL text of ``actions``: one line per action, each ending with a newline.

    Raises ``ValueError`` naming the action (0-based) and the field when an action cannot be
    written (unknown type or key, a target that is neither an index nor an id, a non-finite
    number, ...): nothing is ever dropped silently.
    """
    return "".join(write_action(action, index) + "\n" for index, action in enumerate(actions))


def write_action(action: Mapping[str, Any], index: int = 0) -> str:
    """One action as one canonical line (without the newline)."""
    where = f"action {index}"
    unknown = [] if _KNOWN_KEYS.issuperset(action) else sorted(set(action) - _KNOWN_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; an action has {list(CANONICAL_KEYS + OPTIONAL_KEYS)}")
    action_type = action.get("type")
    if action_type not in ACTION_TYPES:
        raise ValueError(f"{where}: type {action_type!r} is not one of {list(ACTION_TYPES)}")
    parts = [action_type.upper()]
    if action.get("target") is not None:
        parts.append("#" + _target_text(action["target"], where))
    if action.get("text") is not None:
        if not isinstance(action["text"], str):
            raise ValueError(f"{where}: text must be a string, got {type(action['text']).__name__}")
        parts.append(quote(action["text"]))
    if action.get("direction") is not None:
        if action["direction"] not in DIRECTIONS:
            raise ValueError(f"{where}: direction {action['direction']!r} is not one of {list(DIRECTIONS)}")
        parts.append(action["direction"])
    parts.extend(_number_part(action, action_type, where))
    if action.get("box") is not None:
        parts.append("@[" + _numbers_text(action["box"], 4, f"{where}.box") + "]")
    if action.get("point") is not None:
        parts.append("@(" + _numbers_text(action["point"], 2, f"{where}.point") + ")")
    if action.get("end_point") is not None:
        parts.extend(["->", "@(" + _numbers_text(action["end_point"], 2, f"{where}.end_point") + ")"])
    return " ".join(parts)


def quote(text: str) -> str:
    """``text`` as a DSL string literal: double quotes, backslash escapes for what must be escaped."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return '"' + "".join(_escape_char(char) for char in text) + '"'


def _escape_char(char: str) -> str:
    if char in _WRITE_ESCAPES:
        return _WRITE_ESCAPES[char]
    if unicodedata.category(char) in _ESCAPED_CATEGORIES:
        return f"\\u{ord(char):04x}"
    return char


def _target_text(target: Any, where: str) -> str:
    if isinstance(target, int) and not isinstance(target, bool):
        if target < 0:
            raise ValueError(f"{where}: target index {target} is negative")
        return str(target)
    if isinstance(target, str) and _REF.fullmatch(target) and not target.isdigit():
        return target
    raise ValueError(
        f"{where}: target {target!r} must be an element index (int >= 0) or an id of letters, digits, '_' and '-' "
        f"that is not all digits"
    )


def _number_part(action: Mapping[str, Any], action_type: str, where: str) -> list[str]:
    if action.get("amount") is None and action.get("duration") is None:
        return []
    present = [key for key in ("amount", "duration") if action.get(key) is not None]
    if not present:
        return []
    allowed = _NUMBER_KEY.get(action_type)
    if allowed is None or present != [allowed]:
        raise ValueError(
            f"{where}: {present} not allowed on a {action_type!r} action (amount goes with scroll, duration with wait)"
        )
    value = action[allowed]
    if allowed == "amount" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValueError(f"{where}: amount must be a whole number >= 0, got {value!r}")
    return [_number_text(value, f"{where}.{allowed}")]


def _numbers_text(values: Any, count: int, where: str) -> str:
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != count:
        raise ValueError(f"{where}: expected {count} numbers, got {values!r}")
    return ",".join([_number_text(value, where) for value in values])


def _number_text(value: Any, where: str) -> str:
    if type(value) is float and math.isfinite(value):  # the common case first
        return repr(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: {value!r} is not a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a finite number")
        return repr(value)  # shortest text that reads back to the same float; always has '.' or 'e'
    return str(value)


# --------------------------------------------------------------------------------------------
# Parsing


def parse(text: str) -> list[dict[str, Any]]:
    """DSL text -> list of action dicts (canonical keys always, optional keys when given)."""
    actions = []
    for number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line[:-1] if raw_line.endswith("\r") else raw_line
        stripped = line.strip(" \t")
        if not stripped or stripped.startswith("//"):
            continue
        actions.append(_LineParser(line, number).action())
    return actions


class _LineParser:
    """Recursive-descent parser of one action line; ``pos`` is a 0-based index into ``line``."""

    def __init__(self, line: str, number: int) -> None:
        self.line = line
        self.line_number = number
        self.pos = 0

    # -- helpers -----------------------------------------------------------------------------

    def fail(self, expected: str, at: int | None = None) -> DslParseError:
        position = self.pos if at is None else at
        return DslParseError(self.line_number, position + 1, expected, self._found(position))

    def _found(self, position: int) -> str:
        if position >= len(self.line):
            return "end of line"
        token = re.match(r"\S+", self.line[position:])
        return repr(token.group(0)[:20]) if token else repr(self.line[position])

    def skip_spaces(self) -> bool:
        start = self.pos
        while self.pos < len(self.line) and self.line[self.pos] in " \t":
            self.pos += 1
        return self.pos > start

    def at_end(self) -> bool:
        return self.pos >= len(self.line)

    def peek(self, literal: str) -> bool:
        return self.line.startswith(literal, self.pos)

    def expect(self, literal: str, expected: str | None = None) -> None:
        if not self.peek(literal):
            raise self.fail(expected or repr(literal))
        self.pos += len(literal)

    def match(self, pattern: re.Pattern[str]) -> str | None:
        found = pattern.match(self.line, self.pos)
        if not found:
            return None
        self.pos = found.end()
        return found.group(0)

    # -- grammar -----------------------------------------------------------------------------

    def action(self) -> dict[str, Any]:
        self.skip_spaces()
        action: dict[str, Any] = dict.fromkeys(CANONICAL_KEYS)
        action["type"] = self.verb()
        # Each slot may appear once, in this order; ``stage`` is the next slot allowed. A bare
        # number is a slot of SCROLL (amount) and WAIT (seconds) only.
        slots = [slot for slot in _SLOTS if slot != "number" or action["type"] in _NUMBER_KEY]
        stage = 0
        while True:
            had_space = self.skip_spaces()
            if self.at_end():
                break
            if not had_space:
                raise self.fail("a space between fields")
            slot = self.slot_here()
            if slot not in slots or slots.index(slot) < stage:
                hint = " (a bare number only follows SCROLL or WAIT)" if slot == "number" and slot not in slots else ""
                raise self.fail(self.expected_after(slots[stage:]) + hint)
            stage = slots.index(slot) + 1
            self.read_slot(slot, action)
        return action

    def verb(self) -> str:
        start = self.pos
        word = self.match(_WORD)
        if word is None or word not in VERBS:
            hint = " (verbs are upper case)" if word and word.upper() in VERBS else ""
            raise self.fail("an action verb (" + ", ".join(VERBS) + ")" + hint, at=start)
        return VERBS[word]

    def slot_here(self) -> str | None:
        char = self.line[self.pos]
        if char == "#":
            return "target"
        if char == '"':
            return "text"
        if self.peek("@["):
            return "box"
        if self.peek("@("):
            return "point"
        if self.peek("->"):
            return "end_point"
        if char.isdigit() or (char == "-" and self.pos + 1 < len(self.line) and self.line[self.pos + 1].isdigit()):
            return "number"
        word = _WORD.match(self.line, self.pos)
        if word and word.group(0) in DIRECTIONS:
            return "direction"
        return None

    @staticmethod
    def expected_after(remaining: Sequence[str]) -> str:
        names = {
            "target": "#target",
            "text": '"text"',
            "direction": "a direction (up, down, left, right)",
            "number": "a number (scroll amount or wait seconds)",
            "box": "@[x1,y1,x2,y2]",
            "point": "@(x,y)",
            "end_point": "-> @(x,y)",
        }
        if not remaining:
            return "end of line"
        return "one of " + ", ".join(names[slot] for slot in remaining) + " or end of line"

    def read_slot(self, slot: str, action: dict[str, Any]) -> None:
        if slot == "target":
            action["target"] = self.target()
        elif slot == "text":
            action["text"] = self.string()
        elif slot == "direction":
            action["direction"] = self.direction()
        elif slot == "number":
            self.bare_number(action)
        elif slot == "box":
            self.expect("@[")
            action["box"] = self.number_list(4, "]")
        elif slot == "point":
            self.expect("@(")
            action["point"] = self.number_list(2, ")")
        else:
            self.expect("->")
            self.skip_spaces()
            self.expect("@(", "'@(' starting the end point of '->'")
            action["end_point"] = self.number_list(2, ")")

    def target(self) -> int | str:
        self.expect("#")
        ref = self.match(_REF)
        if ref is None:
            raise self.fail("an element index or id after '#' (letters, digits, '_' or '-')")
        return int(ref) if ref.isdigit() else ref

    def direction(self) -> str:
        start = self.pos
        word = self.match(_WORD)
        if word not in DIRECTIONS:
            raise self.fail("a direction (up, down, left, right)", at=start)
        return word

    def bare_number(self, action: dict[str, Any]) -> None:
        start = self.pos
        key = _NUMBER_KEY[action["type"]]
        value = self.number()
        if key == "amount" and (not isinstance(value, int) or value < 0):
            raise self.fail("a whole number >= 0 as the SCROLL amount", at=start)
        action[key] = value

    def number(self) -> int | float:
        text = self.match(_NUMBER)
        if text is None:
            raise self.fail("a number")
        return float(text) if any(char in text for char in ".eE") else int(text)

    def number_list(self, count: int, closing: str) -> list[int | float]:
        values = []
        for index in range(count):
            self.skip_spaces()
            values.append(self.number())
            self.skip_spaces()
            if index < count - 1:
                self.expect(",", f"',' and {count - index - 1} more number(s)")
        self.expect(closing, f"{closing!r} closing {count} numbers")
        return values

    def string(self) -> str:
        opening = self.pos
        self.expect('"')
        chars: list[str] = []
        while True:
            if self.at_end():
                raise self.fail(f"'\"' closing the string opened at column {opening + 1}")
            char = self.line[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(chars)
            if char == "\\":
                chars.append(self.escape())
            else:
                chars.append(char)
                self.pos += 1

    def escape(self) -> str:
        start = self.pos
        self.pos += 1
        if self.at_end():
            raise self.fail('an escape (\\" \\\\ \\n \\r \\t or \\uXXXX) after the backslash', at=start)
        char = self.line[self.pos]
        if char in _SIMPLE_ESCAPES:
            self.pos += 1
            return _SIMPLE_ESCAPES[char]
        if char == "u":
            self.pos += 1
            digits = self.match(_HEX4)
            if digits is None:
                raise self.fail("4 hexadecimal digits after \\u")
            return chr(int(digits, 16))
        raise self.fail('an escape (\\" \\\\ \\n \\r \\t or \\uXXXX) after the backslash', at=start)
