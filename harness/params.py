"""Declared keys: a frozen dataclass's fields, with ``param()`` metadata, checked against TOML.

The scenario loader uses it for the keys every scenario has and for each kind's own keys
(:mod:`harness.kinds`), so both are declared, checked and reported the same way::

    repetitions: int = field(default=20, metadata=param(
        minimum=1, maximum=validate.MAX_ROUNDS, doc="measured cycles"))

A key's range and allowed names are a :class:`hostkit.validate.Bounds` and
:class:`hostkit.validate.Names`, the validator the command-line options use too, so a
scenario value and an option are checked one way (and, for one quantity, against the same
bounds: ``param(bounds=validate.TIMEOUT_S)``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from hostkit import validate


class ScenarioError(ValueError):
    """A scenario file is missing or malformed; the message is one line for the user."""


def param(
    *, minimum: float | None = None, maximum: float | None = None,
    bounds: validate.Bounds | None = None, choices: tuple[str, ...] | None = None, doc: str = "",
    check: Any = None,
) -> dict[str, Any]:
    """Field metadata: the values allowed (``bounds``, or a ``minimum`` and ``maximum``; the
    names ``choices``; or any ``check``: an object whose ``check(value)`` raises
    :class:`hostkit.validate.Invalid`) and what the key means (``doc``)."""
    if bounds is None and (minimum is not None or maximum is not None):
        bounds = validate.Bounds(-math.inf if minimum is None else minimum,
                                 math.inf if maximum is None else maximum)
    return {"check": bounds or (validate.Names(choices) if choices else check), "doc": doc}


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
    if annotation in (int, float):
        try:
            number = validate.as_number(value, integer=annotation is int)
        except validate.Invalid as error:
            raise ScenarioError(f"{where}: key '{key}': {error}") from None
        return float(number) if annotation is float else number
    if not isinstance(value, annotation):
        expected = type_name(annotation)
        raise ScenarioError(f"{where}: key '{key}': expected {expected}, got {value!r}")
    return value


def check_value(where: str, key: str, value: Any, metadata: Mapping[str, Any]) -> None:
    """ScenarioError unless ``value`` keeps to the field's bounds or names (every item of a
    list of names)."""
    check = metadata.get("check")
    try:
        if isinstance(check, validate.Bounds):
            check.check(value)
        elif isinstance(check, validate.Names):
            for item in value if isinstance(value, tuple) else (value,):
                check.check(item)
        elif check is not None:
            check.check(value)
    except validate.Invalid as error:
        raise ScenarioError(f"{where}: key '{key}': {error}") from None


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
