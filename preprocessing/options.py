"""Options declared once: a default, a check and a one-line doc per option.

Every modality, head type and spec section declares its options as `Option`s. The same
declaration fills in defaults, validates a user's value (the check's message names what was
expected), documents the option (`mimo options`, the README tables) and becomes a JSON Schema
property (`mimo schema`, which editors use to validate and complete a spec as it is typed).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, ClassVar


class OptionError(ValueError):
    """An option of one input, output or section is wrong; `key` is the option's name."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Check:
    """A value check: `error(value)` is None when the value is fine, else a message."""

    def error(self, value) -> str | None:
        raise NotImplementedError

    def json_schema(self) -> dict:
        raise NotImplementedError

    def describe(self) -> str:
        """What the check accepts, in a few words (for option tables)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Integer(Check):
    minimum: int = 0
    maximum: int | None = None

    def error(self, value):
        if (
            not _is_int(value)
            or value < self.minimum
            or (self.maximum is not None and value > self.maximum)
        ):
            if self.minimum == 1 and self.maximum is None:
                return f"must be a positive integer, got {value!r}"
            top = f" and <= {self.maximum}" if self.maximum is not None else ""
            return f"must be an integer >= {self.minimum}{top}, got {value!r}"
        return None

    def json_schema(self):
        schema = {"type": "integer", "minimum": self.minimum}
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema

    def describe(self):
        top = f"..{self.maximum}" if self.maximum is not None else ""
        return f"integer >= {self.minimum}{top}" if not top else f"integer {self.minimum}{top}"


@dataclass(frozen=True)
class Number(Check):
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False

    def error(self, value):
        ok = _is_number(value)
        if ok and self.minimum is not None:
            ok = value > self.minimum if self.exclusive_minimum else value >= self.minimum
        if ok and self.maximum is not None:
            ok = value <= self.maximum
        if ok:
            return None
        return f"must be {self.describe()}, got {value!r}"

    def describe(self):
        if self.minimum is not None and self.maximum is not None:
            return f"a number in [{self.minimum}, {self.maximum}]"
        if self.minimum is not None:
            return f"a number {'>' if self.exclusive_minimum else '>='} {self.minimum}"
        return "a number"

    def json_schema(self):
        schema: dict[str, Any] = {"type": "number"}
        if self.minimum is not None:
            schema["exclusiveMinimum" if self.exclusive_minimum else "minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema


@dataclass(frozen=True)
class Choice(Check):
    choices: tuple
    message: str = ""  # replaces "must be one of [...]" when given

    def error(self, value):
        if value in self.choices and not (isinstance(value, bool) and True not in self.choices):
            return None
        if self.message:
            return f"{self.message}, got {value!r}"
        return f"must be one of {sorted(self.choices, key=str)}, got {value!r}"

    def json_schema(self):
        return {"enum": list(self.choices)}

    def describe(self):
        return ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in self.choices)


BOOLEAN = Choice((True, False), "must be true or false")


@dataclass(frozen=True)
class ChoiceList(Check):
    """A list of distinct values from `choices` (may be empty)."""

    choices: tuple

    def error(self, value):
        if (
            isinstance(value, list)
            and all(v in self.choices for v in value)
            and len(set(value)) == len(value)
        ):
            return None
        return f"must be a list of distinct values from {list(self.choices)}, got {value!r}"

    def json_schema(self):
        return {"type": "array", "uniqueItems": True, "items": {"enum": list(self.choices)}}

    def describe(self):
        return f"list of {', '.join(self.choices)}"


@dataclass(frozen=True)
class String(Check):
    def error(self, value):
        return (
            None
            if isinstance(value, str) and value
            else f"must be a non-empty string, got {value!r}"
        )

    def json_schema(self):
        return {"type": "string", "minLength": 1}

    def describe(self):
        return "string"


@dataclass(frozen=True)
class NameList(Check):
    """A list of at least `min_items` distinct names (numbers are read as their string)."""

    min_items: int = 1
    what: str = "name"

    def error(self, value):
        if not isinstance(value, list) or len(value) < self.min_items:
            count = {1: "one", 2: "two"}.get(self.min_items, str(self.min_items))
            return f"must be a list of at least {count} {self.what}s"
        names = [str(v) for v in value]
        if len(set(names)) != len(names):
            return f"lists a {self.what} twice"
        return None

    def json_schema(self):
        return {
            "type": "array",
            "minItems": self.min_items,
            "uniqueItems": True,
            "items": {"type": ["string", "number", "boolean"]},
        }

    def describe(self):
        return f"list of {self.what}s"


@dataclass(frozen=True)
class IntegerList(Check):
    minimum: int = 1

    def error(self, value):
        if (
            not isinstance(value, list)
            or not value
            or not all(_is_int(v) and v >= self.minimum for v in value)
        ):
            return "must be a non-empty list of positive integers"
        return None

    def json_schema(self):
        return {
            "type": "array",
            "minItems": 1,
            "items": {"type": "integer", "minimum": self.minimum},
        }

    def describe(self):
        return "list of integers"


@dataclass(frozen=True)
class Date(Check):
    def error(self, value):
        if isinstance(value, datetime.date):
            return None
        try:
            datetime.date.fromisoformat(str(value))
            return None
        except ValueError:
            return f"must be a date (YYYY-MM-DD), got {value!r}"

    def json_schema(self):
        return {"type": "string", "format": "date"}

    def describe(self):
        return "date YYYY-MM-DD"


@dataclass(frozen=True)
class Nullable(Check):
    """The inner check, or null (the option's documented "not set")."""

    inner: Check

    def error(self, value):
        return None if value is None else self.inner.error(value)

    def json_schema(self):
        return {"anyOf": [self.inner.json_schema(), {"type": "null"}]}

    def describe(self):
        return f"{self.inner.describe()} or null"


@dataclass(frozen=True)
class Anything(Check):
    """No check of its own (the owner checks the value); `what` documents what it takes."""

    what: str = "any"

    def error(self, value):
        return None

    def json_schema(self):
        return {}

    def describe(self):
        return self.what


@dataclass(frozen=True)
class Option:
    """One option: its default, the check a given value must pass, and a one-line doc."""

    default: Any
    doc: str
    check: Check = Anything()

    def json_schema(self) -> dict:
        schema = dict(self.check.json_schema())
        schema["description"] = self.doc
        if self.default is not None:
            schema["default"] = self.default
        return schema


def resolve_options(
    declared: dict[str, Option], given: dict, unknown: str = "unknown option"
) -> tuple[dict, list[OptionError]]:
    """Defaults filled in; every unknown key and every failed check as an OptionError.

    `unknown` starts the message of a key nobody declared ("unknown option for modality 'x'")."""
    errors = [
        OptionError(k, f"{unknown} (known: {', '.join(sorted(declared)) or 'none'})")
        for k in given
        if k not in declared
    ]
    resolved = {k: o.default for k, o in declared.items()}
    for key, value in given.items():
        if key not in declared:
            continue
        message = declared[key].check.error(value)
        if message:
            errors.append(OptionError(key, message))
        else:
            resolved[key] = value
    return resolved, errors


def options_table(declared: dict[str, Option]) -> list[tuple[str, str, str, str]]:
    """(name, default, accepted values, doc) per option, in declaration order."""
    rows = []
    for name, option in declared.items():
        default = option.default
        shown = (
            "null"
            if default is None
            else str(default).lower()
            if isinstance(default, bool)
            else str(default)
        )
        rows.append((name, shown, option.check.describe(), option.doc))
    return rows


def object_schema(declared: dict[str, Option], extra: dict | None = None, required=()) -> dict:
    """A JSON Schema object of the declared options (no other keys allowed)."""
    properties = {k: o.json_schema() for k, o in declared.items()}
    properties.update(extra or {})
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


class Configurable:
    """Something with declared options: a modality, a head type."""

    name: ClassVar[str]
    kind: ClassVar[str] = "modality"  # how errors name it: "modality" or "head type"
    doc: ClassVar[str] = ""  # one line: what it is for
    options: ClassVar[dict[str, Option]] = {}

    @property
    def defaults(self) -> dict:
        return {k: o.default for k, o in self.options.items()}

    def resolve(self, given: dict) -> tuple[dict, list[OptionError]]:
        """Defaults filled in; every error found (unknown keys, checks, then `validate`)."""
        resolved, errors = resolve_options(
            self.options, given, f"unknown option for {self.kind} '{self.name}'"
        )
        if not errors:
            errors = self.validate(resolved)
        return resolved, errors

    def validate(self, options: dict) -> list[OptionError]:
        """Checks across options, after each option passed its own check."""
        return []
