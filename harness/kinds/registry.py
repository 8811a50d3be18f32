"""The one table of scenario kinds: the scenario loader, the runner, the report, the gate and
normalisation read it.

Adding a kind is one module plus one :class:`KindInfo` entry below. The module ends with a
:class:`harness.kinds.base.Kind` (``KIND``) holding

- a frozen dataclass of the kind's own scenario keys, each field declared with
  :func:`harness.params.param` (``minimum``, ``choices``, ``doc``): the loader checks a
  scenario's keys against it, and ``Scenario.params`` is an instance of it;
- ``run(ctx, scenario, backends)``: measures one scenario of the kind on the given backends
  through the :class:`harness.context.RunContext`; a kind that repeats takes its turns
  through :mod:`harness.kinds.rounds`;
- its metrics (:class:`harness.kinds.base.Metric`): unit, which way is worse, headline, host
  reading; and, optionally, ``charts(samples, scenario, output)`` and their captions.

Like the backends' table (:mod:`harness.backends.registry`), an entry names its module and
the module is imported when the kind is first asked for, so this table imports no kind (and
a kind's imports never reach back here). A kind module imports nothing heavy when it is
imported: its chart function imports :mod:`harness.charts` (matplotlib) when called.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass

from harness.kinds.base import Kind, Metric, same_meaning
from harness.params import key_names


@dataclass(frozen=True)
class KindInfo:
    """A kind, before importing it: its name and where its declaration is."""

    name: str  # the value of a scenario's ``kind`` key
    target: str  # "module:attribute" holding its harness.kinds.base.Kind


KINDS: tuple[KindInfo, ...] = (
    KindInfo("startup", "harness.kinds.startup:KIND"),
    KindInfo("density", "harness.kinds.density:KIND"),
    KindInfo("memory", "harness.kinds.memory:KIND"),
    KindInfo("workload", "harness.kinds.workload:KIND"),
)

_TABLE: dict[str, KindInfo] = {kind.name: kind for kind in KINDS}
_LOADED: dict[str, Kind] = {}
_RESERVED: set[str] = {"kind", "params", "overrides"}  # + the loader's common keys


def reserve_keys(names: tuple[str, ...]) -> None:
    """Keys every scenario has (the loader, :mod:`harness.scenario`, declares them): no
    kind may use them for its own."""
    _RESERVED.update(names)


def register(kind: KindInfo) -> None:
    """Add a kind at run time (a plug-in, or a test's fake kind); it is loaded when first
    asked for, as the built-in ones are."""
    _TABLE[kind.name] = kind
    _LOADED.pop(kind.name, None)


def unregister(name: str) -> None:
    if any(kind.name == name for kind in KINDS):
        raise ValueError(f"{name!r} is a built-in kind")
    _TABLE.pop(name, None)
    _LOADED.pop(name, None)


def names() -> tuple[str, ...]:
    """Every kind's name, built-ins in table order first."""
    return tuple(_TABLE)


def info(name: str) -> Kind:
    """The declaration of kind ``name``, its module imported on first use.

    KeyError names the known kinds; ValueError if the module declares something else, keys
    that are not a frozen dataclass or a key every scenario has, or a metric another kind
    declares with another meaning.
    """
    if name in _LOADED:
        return _LOADED[name]
    try:
        entry = _TABLE[name]
    except KeyError:
        raise KeyError(f"unknown kind {name!r}, expected one of {', '.join(_TABLE)}") from None
    module_name, attribute = entry.target.split(":")
    kind = getattr(importlib.import_module(module_name), attribute)
    _check(entry, kind)
    _LOADED[name] = kind
    return kind


def _check(entry: KindInfo, kind: Kind) -> None:
    if not isinstance(kind, Kind) or kind.name != entry.name:
        raise ValueError(f"kind {entry.name!r}: {entry.target} is not its Kind declaration")
    frozen = getattr(getattr(kind.params, "__dataclass_params__", None), "frozen", False)
    if not dataclasses.is_dataclass(kind.params) or not frozen:
        raise ValueError(f"kind {kind.name!r}: params must be a frozen dataclass")
    clash = sorted(set(key_names(kind.params)) & _RESERVED)
    if clash:
        raise ValueError(f"kind {kind.name!r}: {', '.join(clash)} is a key of every scenario")
    for other in _LOADED.values():
        for mine in kind.metrics:
            theirs = other.metric(mine.name) if not mine.pattern else None
            if theirs is not None and not theirs.pattern and not same_meaning(mine, theirs):
                raise ValueError(f"kind {kind.name!r}: metric {mine.name!r} means something "
                                 f"else in kind {other.name!r}")


def loaded() -> tuple[Kind, ...]:
    """Every kind's declaration, in table order (each module imported once)."""
    return tuple(info(name) for name in _TABLE)


def owners(key: str) -> tuple[str, ...]:
    """The kinds that declare ``key`` among their own keys."""
    return tuple(kind.name for kind in loaded() if key in key_names(kind.params))


def metric(name: str, kind: str | None = None) -> Metric | None:
    """The declaration of metric ``name`` (without a ``_vs_<floor>`` suffix).

    With ``kind`` (a sample's own kind): that kind's, None if it declares none or is not
    known here (an old run's, a plug-in's that is not installed). Without: the first kind's
    that declares the exact name, else the first pattern that matches it; for callers that
    have a metric's name alone (thresholds are keyed by name)."""
    if kind is not None:
        return info(kind).metric(name) if kind in _TABLE else None
    declared = loaded()
    exact = next((m for k in declared for m in k.metrics if not m.pattern and m.name == name),
                 None)
    return exact or next((m for k in declared for m in k.metrics
                          if m.pattern and m.matches(name)), None)
