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

An optional ``[runtimes]`` table names OCI runtimes by their binary (``mycrun =
"/opt/mycrun/crun"``, relative to the file's directory): each becomes a container backend
like crun and runc (:mod:`harness.backends.oci.runtimes`), checked and entered in the backend
table before the file's backends are; ``cvbench run --runtime NAME=PATH`` adds to it (and
wins over the file for a name both give).

A scenario's keys are flat: the keys every scenario has (the fields of :class:`Scenario`)
and the keys of its kind (the fields of the kind's dataclass in :mod:`harness.kinds.registry`,
held in ``Scenario.params``). Every mistake raises :class:`ScenarioError` with one line naming
the file, the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from harness.backends import ready_rule, registry
from harness.kinds import registry as kinds
from harness.params import ScenarioError, key_names, param, parse_value, type_name
from hostkit import validate
from imagestore.image import REFERENCE

__all__ = ["Scenario", "ScenarioError", "Suite", "load", "loads", "make", "parse_backends",
           "select_backends"]

NETWORK_MODES = ("none", "bridge", "host")
ACCELS = ("auto", "kvm", "tcg")

ParamsT = TypeVar("ParamsT")


@dataclass(frozen=True)
class Scenario(Generic[ParamsT]):
    """One measurement to run identically on every backend: common keys, and its kind's own."""

    kind: str
    params: ParamsT  # the kind's own keys: an instance of its registry entry's ``params`` dataclass
    name: str = ""
    backends: tuple[str, ...] = ()  # empty: every backend of the suite
    timeout_s: float = field(default=60.0, metadata=param(bounds=validate.TIMEOUT_S))
    network: str = field(default="none", metadata=param(choices=NETWORK_MODES))
    memory_limit_mib: int | None = field(default=None,
                                         metadata=param(bounds=validate.MEMORY_LIMIT_MIB))
    pids_limit: int | None = field(default=None, metadata=param(bounds=validate.PIDS))
    cpu_limit: float | None = field(default=None, metadata=param(bounds=validate.CPUS))
    guest_memory_mib: int = field(default=128, metadata=param(bounds=validate.GUEST_MEMORY_MIB))
    vcpus: int = field(default=1, metadata=param(bounds=validate.VCPUS))
    disk: bool = False
    accel: str = field(default="auto", metadata=param(choices=ACCELS))
    # What READY means (harness.backends.ready_rule): "line:TEXT", "exit" or "tcp:PORT"; the
    # same for every backend of the scenario, so it cannot be overridden per family.
    ready: str = field(default=str(ready_rule.DEFAULT), metadata=param(check=ready_rule.RULE))
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # flat keys, validated

    def for_backend(self, backend: str) -> Scenario[ParamsT]:
        """This scenario with its family's, then the backend's overrides applied (a labelled
        backend, ``floor:namespaces``: its family's, its backend's, then its own)."""
        changes = {**self.overrides.get(registry.family(backend), {}),
                   **self.overrides.get(registry.base(backend), {}),
                   **self.overrides.get(backend, {})}
        if not changes:
            return self
        common = {key: value for key, value in changes.items() if key in COMMON_KEYS}
        own = {key: value for key, value in changes.items() if key not in COMMON_KEYS}
        kind_params: Any = self.params
        return dataclasses.replace(
            self, **common, params=dataclasses.replace(kind_params, **own) if own else self.params
        )

    @property
    def ready_rule(self) -> ready_rule.ReadyRule:
        """The scenario's readiness rule (its ``ready`` key, checked when loaded)."""
        return ready_rule.ReadyRule.parse(self.ready)


# Keys every scenario may have (``kind`` aside); all but name and backends can be overridden.
COMMON_KEYS = tuple(k for k in key_names(Scenario) if k not in ("kind", "params", "overrides"))
# ready cannot be overridden either: one readiness rule for every backend of a scenario.
_OVERRIDABLE_COMMON = tuple(key for key in COMMON_KEYS
                            if key not in ("name", "backends", "ready"))
# Kinds whose instances may run to completion (ready = "exit"): the others measure or use an
# instance after READY, which an exited one cannot give.
EXIT_KINDS = ("startup",)
kinds.reserve_keys(COMMON_KEYS)


def make(kind: str, **keys: Any) -> Scenario[Any]:
    """A scenario of ``kind`` from flat keys (common ones and the kind's own), as in a file
    but unchecked: for code and tests. The name defaults to the kind."""
    common = {key: value for key, value in keys.items() if key in COMMON_KEYS or
              key == "overrides"}
    own = {key: value for key, value in keys.items() if key not in common}
    common.setdefault("name", kind)
    return Scenario(kind=kind, params=kinds.info(kind).params(**own), **common)


@dataclass(frozen=True)
class Suite:
    """A scenario file: its scenarios, the backends they run on, and the file's own text."""

    path: Path
    name: str
    text: str
    backends: tuple[str, ...]
    image: str = "default"
    description: str = ""
    scenarios: tuple[Scenario[Any], ...] = ()
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    runtimes: dict[str, str] = field(default_factory=dict)  # user-named OCI runtime -> binary
    seed: int | None = None  # the turn order's seed; None: drawn at random, and recorded

    def backends_for(self, scenario: Scenario[Any]) -> tuple[str, ...]:
        return tuple(b for b in self.backends if not scenario.backends or b in scenario.backends)

    def options_for(self, backend: str) -> dict[str, Any]:
        """The keyword options ``backend`` is made with: ``[backend_options.<backend>]``; a
        labelled backend (``floor:namespaces``) gets its backend's table, then its own."""
        return {**(self.backend_options.get(registry.base(backend), {})
                   if registry.label(backend) else {}),
                **self.backend_options.get(backend, {})}


SUITE_KEYS = {"name": str, "description": str, "image": str, "backends": list, "seed": int,
              "ready": str}  # ready: every scenario's rule unless it gives its own


def _check_backends(where: str, key: str, names: tuple[str, ...]) -> None:
    for name in names:
        try:
            registry.NAME.check(name)
        except validate.Invalid as error:
            raise ScenarioError(f"{where}: key '{key}': {error}") from None


def _parse_kind(where: str, table: dict[str, Any]) -> str:
    expected = ", ".join(kinds.names())
    if "kind" not in table:
        raise ScenarioError(f"{where}: missing key 'kind', expected one of {expected}")
    kind = table["kind"]
    if not isinstance(kind, str) or kind not in kinds.names():
        raise ScenarioError(f"{where}: key 'kind': expected one of {expected}, got {kind!r}")
    return kind


def _parse_keys(
    where: str, kind: str, table: dict[str, Any], common: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A flat table's values, split into common keys and the kind's own; each checked."""
    own_class = kinds.info(kind).params
    own_keys = key_names(own_class)
    common_values: dict[str, Any] = {}
    own_values: dict[str, Any] = {}
    for key, raw in table.items():
        if key in common:
            common_values[key] = parse_value(where, Scenario, key, raw)
        elif key in own_keys:
            own_values[key] = parse_value(where, own_class, key, raw)
        elif owners := kinds.owners(key):
            raise ScenarioError(
                f"{where}: key '{key}' belongs to kind {' and '.join(owners)}, not {kind}: "
                f"{kind}'s own keys are {', '.join(own_keys) or 'none'}"
            )
        else:
            raise ScenarioError(f"{where}: unknown key '{key}', expected one of "
                                f"{', '.join(sorted((*common, *own_keys)))}")
    return common_values, own_values


def _parse_scenario(path: Path, index: int, table: Any, ready: str | None = None
                    ) -> Scenario[Any]:
    """One ``[[scenario]]`` table; ``ready``: the suite's rule, where the table has none."""
    where = f"{path}: [[scenario]] #{index + 1}"
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}: expected a table")
    kind = _parse_kind(where, table)
    table = {key: value for key, value in table.items() if key != "kind"}
    if ready is not None:
        table.setdefault("ready", ready)
    overrides_raw = table.pop("overrides", {})
    common, own = _parse_keys(where, kind, table, COMMON_KEYS)
    _check_backends(where, "backends", common.get("backends", ()))
    if not isinstance(overrides_raw, dict):
        raise ScenarioError(f"{where}: key 'overrides': expected a table of backend tables")
    overrides: dict[str, dict[str, Any]] = {}
    for backend, changes in overrides_raw.items():
        if backend not in registry.FAMILIES:
            _check_backends(where, "overrides", (backend,))
        if not isinstance(changes, dict):
            raise ScenarioError(f"{where}: key 'overrides.{backend}': expected a table")
        changed_common, changed_own = _parse_keys(f"{where} overrides.{backend}", kind, changes,
                                                  _OVERRIDABLE_COMMON)
        overrides[backend] = {**changed_common, **changed_own}
    scenario = make(kind, **common, **own, overrides=overrides)
    _check_ready(where, scenario)
    return scenario


def _check_ready(where: str, scenario: Scenario[Any]) -> None:
    """A rule the scenario's own keys cannot keep: ``exit`` for a kind that uses its
    instances after READY, ``tcp`` without a bridge (for any backend, overrides applied)."""
    rule = scenario.ready_rule
    if rule.kind == ready_rule.EXIT and scenario.kind not in EXIT_KINDS:
        raise ScenarioError(f"{where}: key 'ready': \"exit\" is for run-to-completion "
                            f"images, which only a {' or '.join(EXIT_KINDS)} scenario takes "
                            f"(a {scenario.kind} scenario uses its instances after READY)")
    if rule.kind != ready_rule.TCP:
        return
    networks = {scenario.network, *(changes["network"] for changes in
                                    scenario.overrides.values() if "network" in changes)}
    if networks != {"bridge"}:
        raise ScenarioError(f"{where}: key 'ready': {scenario.ready!r} connects to the "
                            "instance's bridge address: it needs network = \"bridge\" "
                            "(for every backend)")


def loads(text: str, path: Path | str = "<string>",
          runtimes: dict[str, str] | None = None) -> Suite:
    """Parse and validate a scenario file's text; ``runtimes`` (``cvbench run --runtime``,
    name -> path) are declared with the file's ``[runtimes]`` and win over them."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from None
    unknown = set(data) - {"suite", "scenario", "backend_options", "runtimes"}
    if unknown:
        raise ScenarioError(
            f"{path}: unknown key '{sorted(unknown)[0]}', "
            "expected 'suite', 'scenario', 'backend_options' and 'runtimes' tables"
        )
    declared = _declare_runtimes(path, data.get("runtimes", {}), runtimes or {})
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
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ScenarioError(
                f"{path}: [suite]: key '{key}': expected {type_name(expected)}"
            )
    for key, check in (("seed", validate.SEED), ("image", REFERENCE),
                       ("ready", ready_rule.RULE)):
        try:
            if key in suite_table:
                check.check(suite_table[key])
        except validate.Invalid as error:
            raise ScenarioError(f"{path}: [suite]: key '{key}': {error}") from None
    backends = suite_table.get("backends", list(registry.names()))
    if not backends or not all(isinstance(b, str) for b in backends):
        raise ScenarioError(f"{path}: [suite]: key 'backends': expected a non-empty list of names")
    _check_backends(f"{path}: [suite]", "backends", tuple(backends))
    twice = next((b for b in backends if backends.count(b) > 1), None)
    if twice:
        raise ScenarioError(f"{path}: [suite]: key 'backends': {twice!r} is listed twice (a "
                            f"second {registry.base(twice)} needs a label of its own: "
                            f"'{registry.base(twice)}:<label>')")
    tables = data.get("scenario")
    if not isinstance(tables, list) or not tables:
        raise ScenarioError(f"{path}: missing [[scenario]] tables, expected at least one")
    scenarios = tuple(_parse_scenario(path, i, t, suite_table.get("ready"))
                      for i, t in enumerate(tables))
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
        runtimes=declared,
        seed=suite_table.get("seed"),
    )


def _declare_runtimes(path: Path, table: Any, given: dict[str, str]) -> dict[str, str]:
    """``[runtimes]`` (paths relative to the file's directory), then the command line's
    ``given`` ones (relative to the working directory), each checked and entered in the
    backend table (:func:`harness.backends.oci.runtimes.declare`); name -> binary."""
    from harness.backends.oci import runtimes

    where = f"{path}: [runtimes]"
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}: expected a table of runtime names and binary paths")
    declared: dict[str, str] = {}
    base = path.resolve().parent
    for name, binary in {**table, **given}.items():
        source = "--runtime" if name in given else f"{where}: key '{name}'"
        if not isinstance(binary, str) or not binary:
            raise ScenarioError(f"{source}: expected the path of the runtime's binary")
        try:
            declared[name] = runtimes.declare(name, binary, None if name in given else base)
        except validate.Invalid as error:
            raise ScenarioError(f"{source}: runtime {name}: {error}") from None
    return declared


def _parse_backend_options(path: Path, table: Any) -> dict[str, dict[str, Any]]:
    """``[backend_options.<backend>]``: keyword options for a backend's constructor."""
    where = f"{path}: [backend_options]"
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}: expected a table of backend tables")
    options: dict[str, dict[str, Any]] = {}
    for backend, values in table.items():
        _check_backends(where, "backend_options", (backend,))
        if not isinstance(values, dict) or not all(
            isinstance(v, str | int | float | bool)
            or (isinstance(v, list) and all(isinstance(item, str) for item in v))
            for v in values.values()
        ):
            raise ScenarioError(
                f"{where}: key '{backend}': expected a table of strings, numbers, booleans or "
                "lists of strings"
            )
        options[backend] = dict(values)
    return options


def load(path: Path | str, runtimes: dict[str, str] | None = None) -> Suite:
    """Read and validate a scenario file (``runtimes``: as :func:`loads` takes them)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: cannot read scenario file: {error}") from None
    return loads(text, path, runtimes)


def parse_backends(requested: str) -> tuple[str, ...]:
    """``--backend a,b`` as validated backend names."""
    try:
        return registry.NAME_LIST.split(requested)
    except validate.Invalid as error:
        raise ScenarioError(f"--backend: {error}") from None


def select_backends(suite: Suite, requested: str | None) -> Suite:
    """Restrict a suite to ``--backend a,b`` (validated against the known names)."""
    if not requested:
        return suite
    return dataclasses.replace(suite, backends=parse_backends(requested))
