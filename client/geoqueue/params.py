"""Job parameters, typed: each job's parameters are declared once with these types, and the same
declaration checks a submit (Python, CLI, HTTP), writes the HTTP API's request schema and lets a
worker trust what it receives. A refused value raises InvalidParams naming the field.

Plain Python on purpose: a producer app installs celery and redis, nothing else.
"""
from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from geoqueue.s3ref import BadReference, parse_ref


class InvalidParams(ValueError):
    """Parameters refused before anything is enqueued; `field` names the parameter (dotted for nested)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# A refusal quotes the start of a value only: the value may be as large as a body allows.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlist = _SHORT.maxdict = 8


def shown(value: Any) -> str:
    """The value as a refusal quotes it: its repr, cut short."""
    return _SHORT.repr(value)


def listed(names: list[str], most: int = 8) -> str:
    """Names as a refusal lists them: the first few, each cut short."""
    cut = [name if len(name) <= 80 else name[:77] + "..." for name in names[:most]]
    return ", ".join(cut) + (f" and {len(names) - most} more" if len(names) > most else "")


def _refuse(field: str, expected: str, value: Any) -> InvalidParams:
    return InvalidParams(f"{field}: must be {expected}, got {shown(value)}", field=field)


def _too_long(field: str, most: int, length: int, unit: str = "characters") -> InvalidParams:
    return InvalidParams(f"{field}: at most {most} {unit}, got {length}", field=field)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Type:
    """A parameter's type: `check` returns the value or raises InvalidParams; `schema` is its JSON Schema."""

    def check(self, value: Any, field: str) -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Whole(Type):
    minimum: int | None = None
    maximum: int | None = None

    def check(self, value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self._within(value):
            raise _refuse(field, f"a whole number{self._bounds()}", value)
        return value

    def _within(self, value: float) -> bool:
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def _bounds(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" from {self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f" of at least {self.minimum}"
        return f" of at most {self.maximum}" if self.maximum is not None else ""

    def schema(self) -> dict[str, Any]:
        return _bounded({"type": "integer"}, self.minimum, self.maximum)


@dataclass(frozen=True)
class Number(Whole):
    """A finite number (NaN and infinities refused: JSON cannot carry them and no vendor takes them)."""

    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False

    def check(self, value: Any, field: str) -> float:
        fits = _is_number(value) and math.isfinite(value) and self._within(value)
        if not (fits and (value > 0 or not self.positive)):
            expected = "a positive number" if self.positive else "a finite number"
            raise _refuse(field, f"{expected}{self._bounds()}", value)
        return value

    def schema(self) -> dict[str, Any]:
        schema = _bounded({"type": "number"}, self.minimum, self.maximum)
        return schema | ({"exclusiveMinimum": 0} if self.positive else {})


@dataclass(frozen=True)
class Flag(Type):
    def check(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            raise _refuse(field, "true or false", value)
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Text(Type):
    pattern: str | None = None        # the whole value must match
    max_length: int = 1000
    describe: str = "a non-empty text"

    def check(self, value: Any, field: str) -> str:
        if isinstance(value, str) and len(value) > self.max_length:
            raise _too_long(field, self.max_length, len(value))
        if not isinstance(value, str) or not value.strip() or (self.pattern and not re.fullmatch(self.pattern, value)):
            raise _refuse(field, self.describe, value)
        return value

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": self.max_length}
        return schema | ({"pattern": f"^(?:{self.pattern})$"} if self.pattern else {})


@dataclass(frozen=True)
class Digits(Type):
    """A numeric id that may come as a JSON number or a string of digits (ids outgrow JSON's safe
    integers), of at most 20 digits: any 64-bit id fits."""

    MOST = 20

    def check(self, value: Any, field: str) -> str | int:
        if isinstance(value, bool) or not (isinstance(value, int) and 0 <= value < 10 ** self.MOST
                                           or isinstance(value, str) and len(value) <= self.MOST
                                           and value.isdigit() and value.isascii()):
            raise _refuse(field, f"a numeric id of at most {self.MOST} digits", value)
        return value

    def schema(self) -> dict[str, Any]:
        return {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 10 ** self.MOST - 1},
                          {"type": "string", "pattern": "^[0-9]+$", "maxLength": self.MOST}]}


@dataclass(frozen=True)
class Choice(Type):
    values: tuple[Any, ...]

    def check(self, value: Any, field: str) -> Any:
        if isinstance(value, bool) or value not in self.values or type(value) not in {type(v) for v in self.values}:
            raise _refuse(field, f"one of {', '.join(map(repr, self.values))}", value)
        return value

    def schema(self) -> dict[str, Any]:
        return {"enum": list(self.values)}


# "s3://", a bucket name of at most 63 characters, "/" and a key of at most 1024 (S3's limits).
MAX_S3_URI = 5 + 63 + 1 + 1024


@dataclass(frozen=True)
class S3Location(Type):
    """An s3:// reference: an object, or with `prefix` a folder; an input the job reads, or with
    `output` where it writes. Which apps may read or write where is the fleet's (config/apps.py)."""

    prefix: bool = False
    output: bool = False

    def check(self, value: Any, field: str) -> str:
        if isinstance(value, str) and len(value) > MAX_S3_URI:
            raise _too_long(field, MAX_S3_URI, len(value))
        try:
            parse_ref(value, field, prefix=self.prefix)
        except BadReference as exc:
            raise InvalidParams(str(exc), field=field) from None
        return value

    def schema(self) -> dict[str, Any]:
        if self.prefix:
            return {"type": "string", "pattern": "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$",
                    "maxLength": MAX_S3_URI, "description": "a prefix: s3://bucket/folder/ (a trailing '/' is implied)"}
        return {"type": "string", "pattern": "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.*[^/]$",
                "maxLength": MAX_S3_URI, "description": "an object: s3://bucket/key"}


def S3Object(output: bool = False) -> S3Location:
    return S3Location(output=output)


def S3Prefix(output: bool = False) -> S3Location:
    return S3Location(prefix=True, output=output)


@dataclass(frozen=True)
class ListOf(Type):
    """A list of typed items. `max_items` is required: an unbounded list lets one submit fill Redis."""

    item: Type
    min_items: int = 0
    max_items: int | None = None
    unique: bool = False
    single: bool = False              # a lone item stands for a list of one

    def __post_init__(self) -> None:
        if self.max_items is None:
            raise TypeError("ListOf needs max_items")

    def check(self, value: Any, field: str) -> list:
        if self.single and not isinstance(value, list):
            value = [value]
        if not isinstance(value, list):
            raise _refuse(field, "a list", value)
        if not self.min_items <= len(value) <= self.max_items:
            raise InvalidParams(f"{field}: needs at least {self.min_items} and at most {self.max_items} items, "
                                f"got {len(value)}", field=field)
        checked = [self.item.check(item, f"{field}[{n}]") for n, item in enumerate(value)]
        if self.unique and len({repr(v) for v in checked}) != len(checked):
            raise InvalidParams(f"{field}: an item appears twice in {shown(value)}", field=field)
        return checked

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array", "items": self.item.schema(), "minItems": self.min_items,
                                  "maxItems": self.max_items}
        if self.unique:
            schema["uniqueItems"] = True
        return {"oneOf": [self.item.schema(), schema]} if self.single else schema


@dataclass(frozen=True)
class Options(Type):
    """An object of named, typed values; unknown names are refused, listing the known ones."""

    fields: Mapping[str, Type]
    what: str = "option"

    def check(self, value: Any, field: str) -> dict:
        if not isinstance(value, dict):
            raise _refuse(field, f"an object of {self.what}s", value)
        unknown = sorted(map(str, set(value) - set(self.fields)))
        if unknown:
            raise InvalidParams(f"{field}: unknown {self.what}(s) {listed(unknown)} "
                                f"(known: {', '.join(self.fields)})", field=f"{field}.{unknown[0]}")
        return {name: self.fields[name].check(item, f"{field}.{name}") for name, item in value.items()}

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": {n: t.schema() for n, t in self.fields.items()},
                "additionalProperties": False}


@dataclass(frozen=True)
class OneOf(Type):
    """The first alternative that accepts the value; `describe` says what is expected."""

    alternatives: tuple[Type, ...]
    describe: str

    def check(self, value: Any, field: str) -> Any:
        for alternative in self.alternatives:
            try:
                return alternative.check(value, field)
            except InvalidParams:
                continue
        raise _refuse(field, self.describe, value)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [a.schema() for a in self.alternatives], "description": self.describe}


@dataclass(frozen=True)
class Record(Type):
    """An object with required keys, each typed (e.g. {"fx", "fy", "ox", "oy"})."""

    fields: Mapping[str, Type]

    def check(self, value: Any, field: str) -> dict:
        if not isinstance(value, dict) or set(value) != set(self.fields):
            raise _refuse(field, f"an object with exactly {', '.join(self.fields)}", value)
        return {name: self.fields[name].check(value[name], f"{field}.{name}") for name in self.fields}

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": {n: t.schema() for n, t in self.fields.items()},
                "required": list(self.fields), "additionalProperties": False}


def _bounded(schema: dict[str, Any], minimum: float | None, maximum: float | None) -> dict[str, Any]:
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


@dataclass(frozen=True)
class Param:
    type: Type
    doc: str
    required: bool = False


@dataclass(frozen=True)
class JobSpec:
    """A job a producer may submit: its name, what it does, its parameters and any rule across them."""

    name: str
    summary: str
    params: Mapping[str, Param]
    rule: Callable[[dict[str, Any]], None] | None = None     # raises InvalidParams
    rule_doc: str = ""

    @property
    def vendor(self) -> str:
        return self.name.split(".", 1)[0]

    def check(self, params: Any) -> dict[str, Any]:
        """The parameters if they fit this job; InvalidParams naming every unknown or missing one, or the bad field."""
        if not isinstance(params, dict):
            raise InvalidParams(f"params: {self.name} takes an object of named parameters, got {shown(params)}",
                                field="params")
        unknown = sorted(map(str, set(params) - set(self.params)))
        missing = [name for name, p in self.params.items() if p.required and params.get(name) is None]
        if unknown or missing:
            parts = [f"unknown parameter(s) {listed(unknown)} (known: {', '.join(self.params)})"] if unknown else []
            parts += [f"missing parameter(s) {', '.join(missing)}"] if missing else []
            raise InvalidParams(f"{self.name}: {'; '.join(parts)}", field=(unknown or missing)[0])
        checked = {name: self.params[name].type.check(value, name) if value is not None else None
                   for name, value in params.items()}
        if self.rule is not None:
            self.rule(checked)
        return checked

    def locations(self, params: dict[str, Any]) -> list[tuple[str, str, S3Location]]:
        """(field, value, type) of each s3:// input and output given in checked `params`."""
        return [(name, value, self.params[name].type) for name, value in params.items()
                if value is not None and isinstance(self.params[name].type, S3Location)]

    def schema(self) -> dict[str, Any]:
        """JSON Schema of the `params` object."""
        schema: dict[str, Any] = {
            "title": self.name, "description": self.summary + (f" {self.rule_doc}" if self.rule_doc else ""),
            "type": "object", "additionalProperties": False,
            "properties": {name: p.type.schema() | {"description": p.doc} for name, p in self.params.items()},
        }
        required = [name for name, p in self.params.items() if p.required]
        return schema | ({"required": required} if required else {})


@dataclass
class Catalog:
    """Every job a producer may submit, by name."""

    specs: dict[str, JobSpec] = field(default_factory=dict)

    def add(self, *specs: JobSpec) -> None:
        for spec in specs:
            self.specs[spec.name] = spec

    def __getitem__(self, name: str) -> JobSpec:
        if not isinstance(name, str) or name not in self.specs:
            raise InvalidParams(f"unknown job {shown(name)}; the jobs are: {', '.join(sorted(self.specs))}",
                                field="name")
        return self.specs[name]

    def __contains__(self, name: object) -> bool:
        return name in self.specs

    def __iter__(self):
        return iter(sorted(self.specs))
