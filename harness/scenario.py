"""Scenario files: TOML loaded into frozen dataclasses, validated before anything starts.

A file holds one ``[suite]`` table and one or more ``[[scenario]]`` tables::

    [suite]
    name = "startup"
    backends = ["process", "ours", "crun", "runc", "libvirt"]

    [[scenario]]
    kind = "startup"
    repetitions = 50

    [scenario.overrides.vm]          # changes of the scenario's own keys for a family
    repetitions = 10                 # (vm, container) or one backend (the backend wins)

Every mistake raises :class:`ScenarioError` with one line naming the file, the key and what was
expected.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends import registry

KINDS = ("startup", "density", "memory")
NETWORK_MODES = ("none", "bridge", "host")
ACCELS = ("auto", "kvm", "tcg")
KSM_MODES = ("off", "on")


class ScenarioError(ValueError):
    """A scenario file is missing or malformed; the message is one line for the user."""


def _spec(*, minimum: float | None = None, choices: tuple[str, ...] | None = None, doc: str = ""):
    return {"minimum": minimum, "choices": choices, "doc": doc}


@dataclass(frozen=True)
class Scenario:
    """One measurement to run identically on every backend."""

    kind: str = field(metadata=_spec(choices=KINDS))
    name: str = ""
    backends: tuple[str, ...] = ()  # empty: every backend of the suite
    timeout_s: float = field(default=60.0, metadata=_spec(minimum=0.001))
    network: str = field(default="none", metadata=_spec(choices=NETWORK_MODES))
    memory_limit_mib: int | None = field(default=None, metadata=_spec(minimum=4))
    pids_limit: int | None = field(default=None, metadata=_spec(minimum=1))
    cpu_limit: float | None = field(default=None, metadata=_spec(minimum=0.01))
    guest_memory_mib: int = field(default=128, metadata=_spec(minimum=16))
    vcpus: int = field(default=1, metadata=_spec(minimum=1))
    disk: bool = False
    accel: str = field(default="auto", metadata=_spec(choices=ACCELS))
    # startup
    repetitions: int = field(default=20, metadata=_spec(minimum=1))
    warmup: int = field(default=2, metadata=_spec(minimum=0))
    # density
    max_instances: int = field(default=100, metadata=_spec(minimum=1))
    batch_size: int = field(default=1, metadata=_spec(minimum=1))
    min_mem_available_mib: int = field(default=2048, metadata=_spec(minimum=0))
    time_limit_s: float = field(default=600.0, metadata=_spec(minimum=0.001))
    # memory
    instances: int = field(default=10, metadata=_spec(minimum=1))
    settle_s: float = field(default=5.0, metadata=_spec(minimum=0))
    ksm: tuple[str, ...] = field(default=("off",), metadata=_spec(choices=KSM_MODES))
    passes: int = field(default=1, metadata=_spec(minimum=1))  # measured passes
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_backend(self, backend: str) -> Scenario:
        """This scenario with its family's, then the backend's overrides applied."""
        changes = {**self.overrides.get(registry.family(backend), {}),
                   **self.overrides.get(backend, {})}
        return dataclasses.replace(self, **changes) if changes else self


@dataclass(frozen=True)
class Suite:
    """A scenario file: its scenarios, the backends they run on, and the file's own text."""

    path: Path
    name: str
    text: str
    backends: tuple[str, ...]
    image: str = "default"
    description: str = ""
    scenarios: tuple[Scenario, ...] = ()
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def backends_for(self, scenario: Scenario) -> tuple[str, ...]:
        return tuple(b for b in self.backends if not scenario.backends or b in scenario.backends)


SUITE_KEYS = {"name": str, "description": str, "image": str, "backends": list}
_SCENARIO_FIELDS = {f.name: f for f in dataclasses.fields(Scenario)}
_OVERRIDABLE = set(_SCENARIO_FIELDS) - {"kind", "name", "backends", "overrides"}


def _type_name(expected: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        expected, str(expected)
    )


def _coerce(where: str, key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field's annotation; return it in the dataclass's form."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):  # "X | None": TOML has no null, so X
        return _coerce(where, key, value, next(a for a in args if a is not type(None)))
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
        expected = _type_name(annotation)
        raise ScenarioError(f"{where}: key '{key}': expected {expected}, got {value!r}")
    return value


def _check_value(where: str, key: str, value: Any) -> None:
    meta = _SCENARIO_FIELDS[key].metadata
    minimum, choices = meta.get("minimum"), meta.get("choices")
    if minimum is not None and value < minimum:
        raise ScenarioError(f"{where}: key '{key}': expected a value >= {minimum:g}, got {value!r}")
    if choices:
        for item in value if isinstance(value, tuple) else (value,):
            if item not in choices:
                raise ScenarioError(
                    f"{where}: key '{key}': expected one of {', '.join(choices)}, got {item!r}"
                )


def _check_backends(where: str, key: str, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in registry.names():
            raise ScenarioError(
                f"{where}: key '{key}': unknown backend {name!r}, "
                f"expected one of {', '.join(registry.names())}"
            )


_HINTS = typing.get_type_hints(Scenario)


def _parse_fields(where: str, table: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in allowed:
            raise ScenarioError(
                f"{where}: unknown key '{key}', expected one of {', '.join(sorted(allowed))}"
            )
        value = _coerce(where, key, raw, _HINTS[key])
        _check_value(where, key, value)
        values[key] = value
    return values


def _parse_scenario(path: Path, index: int, table: Any) -> Scenario:
    where = f"{path}: [[scenario]] #{index + 1}"
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}: expected a table")
    if "kind" not in table:
        raise ScenarioError(f"{where}: missing key 'kind', expected one of {', '.join(KINDS)}")
    table = dict(table)
    overrides_raw = table.pop("overrides", {})
    values = _parse_fields(where, table, set(_SCENARIO_FIELDS) - {"overrides"})
    _check_backends(where, "backends", values.get("backends", ()))
    if not isinstance(overrides_raw, dict):
        raise ScenarioError(f"{where}: key 'overrides': expected a table of backend tables")
    overrides: dict[str, dict[str, Any]] = {}
    for backend, changes in overrides_raw.items():
        if backend not in registry.FAMILIES:
            _check_backends(where, "overrides", (backend,))
        if not isinstance(changes, dict):
            raise ScenarioError(f"{where}: key 'overrides.{backend}': expected a table")
        overrides[backend] = _parse_fields(f"{where} overrides.{backend}", changes, _OVERRIDABLE)
    values.setdefault("name", values["kind"])
    return Scenario(**values, overrides=overrides)


def loads(text: str, path: Path | str = "<string>") -> Suite:
    """Parse and validate a scenario file's text."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from None
    unknown = set(data) - {"suite", "scenario", "backend_options"}
    if unknown:
        raise ScenarioError(
            f"{path}: unknown key '{sorted(unknown)[0]}', "
            "expected 'suite', 'scenario' and 'backend_options' tables"
        )
    backend_options = _parse_backend_options(path, data.get("backend_options", {}))
    suite_table = data.get("suite", {})
    if not isinstance(suite_table, dict):
        raise ScenarioError(f"{path}: key 'suite': expected a table")
    for key, value in suite_table.items():
        expected = SUITE_KEYS.get(key)
        if expected is None:
            raise ScenarioError(
                f"{path}: [suite]: unknown key '{key}', expected one of {', '.join(SUITE_KEYS)}"
            )
        if not isinstance(value, expected):
            raise ScenarioError(f"{path}: [suite]: key '{key}': expected {_type_name(expected)}")
    backends = suite_table.get("backends", list(registry.names()))
    if not backends or not all(isinstance(b, str) for b in backends):
        raise ScenarioError(f"{path}: [suite]: key 'backends': expected a non-empty list of names")
    _check_backends(f"{path}: [suite]", "backends", tuple(backends))
    tables = data.get("scenario")
    if not isinstance(tables, list) or not tables:
        raise ScenarioError(f"{path}: missing [[scenario]] tables, expected at least one")
    scenarios = tuple(_parse_scenario(path, i, t) for i, t in enumerate(tables))
    names = [s.name for s in scenarios]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ScenarioError(f"{path}: key 'name': scenario name {duplicate!r} is used twice")
    return Suite(
        path=path,
        name=suite_table.get("name", path.stem),
        text=text,
        backends=tuple(backends),
        image=suite_table.get("image", "default"),
        description=suite_table.get("description", ""),
        scenarios=scenarios,
        backend_options=backend_options,
    )


def _parse_backend_options(path: Path, table: Any) -> dict[str, dict[str, Any]]:
    """``[backend_options.<backend>]``: keyword options for a backend's constructor."""
    where = f"{path}: [backend_options]"
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}: expected a table of backend tables")
    options: dict[str, dict[str, Any]] = {}
    for backend, values in table.items():
        _check_backends(where, "backend_options", (backend,))
        if not isinstance(values, dict) or not all(
            isinstance(v, str | int | float | bool) for v in values.values()
        ):
            raise ScenarioError(
                f"{where}: key '{backend}': expected a table of strings, numbers or booleans"
            )
        options[backend] = dict(values)
    return options


def load(path: Path | str) -> Suite:
    """Read and validate a scenario file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: cannot read scenario file: {error}") from None
    return loads(text, path)


def parse_backends(requested: str) -> tuple[str, ...]:
    """``--backend a,b`` as validated backend names."""
    names = tuple(n.strip() for n in requested.split(",") if n.strip())
    if not names:
        raise ScenarioError("--backend: expected a comma-separated list of backend names")
    _check_backends("--backend", "backend", names)
    return names


def select_backends(suite: Suite, requested: str | None) -> Suite:
    """Restrict a suite to ``--backend a,b`` (validated against the known names)."""
    if not requested:
        return suite
    return dataclasses.replace(suite, backends=parse_backends(requested))
