"""Declared keys: a frozen dataclass's fields, with ``param()`` metadata, checked against TOML.

The scenario loader uses it for the keys every scenario has and for each kind's own keys
(:mod:`harness.kinds`), so both are declared, checked and reported the same way::

    repetitions: int = field(default=20, metadata=param(minimum=1, doc="measured cycles"))
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any


class ScenarioError(ValueError):
    """A scenario file is missing or malformed; the message is one line for the user."""


def param(
    *, minimum: float | None = None, choices: tuple[str, ...] | None = None, doc: str = ""
) -> dict[str, Any]:
    """Field metadata: the smallest value allowed, the values allowed, what the key means."""
    return {"minimum": minimum, "choices": choices, "doc": doc}


def key_names(cls: type) -> tuple[str, ...]:
    """The keys (field names) a dataclass declares, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls))


def type_name(expected: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        expected, str(expected)
    )


def coerce(where: str, key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field's annotation; return it in the dataclass's form."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):  # "X | None": TOML has no null, so X
        return coerce(where, key, value, next(a for a in args if a is not type(None)))
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ScenarioError(f"{where}: key '{key}': expected a list of strings")
        return tuple(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScenarioError(f"{where}: key '{key}': expected a number, got {value!r}")
        return float(value)
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ScenarioError(f"{where}: key '{key}': expected an integer, got {value!r}")
    if not isinstance(value, annotation):
        expected = type_name(annotation)
        raise ScenarioError(f"{where}: key '{key}': expected {expected}, got {value!r}")
    return value


def check_value(where: str, key: str, value: Any, metadata: Mapping[str, Any]) -> None:
    """ScenarioError unless ``value`` keeps to the field's ``minimum`` and ``choices``."""
    minimum, choices = metadata.get("minimum"), metadata.get("choices")
    if minimum is not None and value < minimum:
        raise ScenarioError(f"{where}: key '{key}': expected a value >= {minimum:g}, got {value!r}")
    if choices:
        for item in value if isinstance(value, tuple) else (value,):
            if item not in choices:
                raise ScenarioError(
                    f"{where}: key '{key}': expected one of {', '.join(choices)}, got {item!r}"
                )


def parse_value(where: str, cls: type, key: str, raw: Any) -> Any:
    """The value of ``cls``'s field ``key`` read from TOML, checked; ScenarioError if not."""
    annotation, metadata = _declared(cls)[key]
    value = coerce(where, key, raw, annotation)
    check_value(where, key, value, metadata)
    return value


@functools.cache
def _declared(cls: type) -> dict[str, tuple[Any, Mapping[str, Any]]]:
    """Each field of ``cls``: its resolved annotation and its metadata."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.metadata) for f in dataclasses.fields(cls)}
