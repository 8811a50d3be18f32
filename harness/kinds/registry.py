"""The one table of scenario kinds: the scenario loader, the runner and the report read it.

Adding a kind is one module plus one :class:`KindInfo` entry below. The module holds

- a frozen dataclass of the kind's own scenario keys, each field declared with
  :func:`harness.params.param` (``minimum``, ``choices``, ``doc``): the loader checks a
  scenario's keys against it, and ``Scenario.params`` is an instance of it;
- ``run(ctx, scenario, backends)``: measures one scenario of the kind on the given backends
  through the :class:`harness.context.RunContext` (start, stop, sample, record, note failures);
- optionally ``charts(samples, scenario, output)``: draws the scenario's charts into
  ``output`` and returns their paths (a kind without charts still gets its summary table).

A kind module imports nothing heavy when it is imported (the loader reads its keys): its chart
function imports :mod:`harness.charts` (matplotlib) when called.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from harness.kinds import density, memory, startup, workload
from harness.params import key_names

if TYPE_CHECKING:
    import pandas as pd

    from harness.context import RunContext
    from harness.scenario import Scenario

RunFunction: TypeAlias = "Callable[[RunContext, Scenario[Any], tuple[str, ...]], None]"
ChartFunction: TypeAlias = "Callable[[pd.DataFrame, str, Path], list[Path]]"


@dataclass(frozen=True)
class KindInfo:
    """A scenario kind: its keys, how it runs, how it is drawn."""

    name: str  # the value of a scenario's ``kind`` key
    params: type  # frozen dataclass of the kind's own keys (fields with params.param())
    run: RunFunction
    summary: str  # one line: what a scenario of this kind measures
    charts: ChartFunction | None = None


KINDS: tuple[KindInfo, ...] = (
    KindInfo("startup", startup.StartupParams, startup.run,
             "start → READY → stop, repeated, backends interleaved", startup.charts),
    KindInfo("density", density.DensityParams, density.run,
             "instances ramped up until a limit, launch time and host memory at each step",
             density.charts),
    KindInfo("memory", memory.MemoryParams, memory.run,
             "per-instance memory of K idle instances, by several views", memory.charts),
    KindInfo("workload", workload.WorkloadParams, workload.run,
             "CPU, memory, disk, network and redis inside one instance per backend, relative "
             "to the host", workload.charts),
)

_TABLE: dict[str, KindInfo] = {kind.name: kind for kind in KINDS}
_RESERVED: set[str] = {"kind", "params", "overrides"}  # + the loader's common keys


def reserve_keys(names: tuple[str, ...]) -> None:
    """Keys every scenario has (the loader, :mod:`harness.scenario`, declares them): no
    kind may use them for its own."""
    _RESERVED.update(names)


def register(kind: KindInfo) -> None:
    """Add a kind at run time (a plug-in, or a test's fake kind).

    ValueError if its keys are not a frozen dataclass or one of them is a common key.
    """
    frozen = getattr(getattr(kind.params, "__dataclass_params__", None), "frozen", False)
    if not dataclasses.is_dataclass(kind.params) or not frozen:
        raise ValueError(f"kind {kind.name!r}: params must be a frozen dataclass")
    clash = sorted(set(key_names(kind.params)) & _RESERVED)
    if clash:
        raise ValueError(f"kind {kind.name!r}: {', '.join(clash)} is a key of every scenario")
    _TABLE[kind.name] = kind


def unregister(name: str) -> None:
    if any(kind.name == name for kind in KINDS):
        raise ValueError(f"{name!r} is a built-in kind")
    _TABLE.pop(name, None)


def names() -> tuple[str, ...]:
    """Every kind's name, built-ins in table order first."""
    return tuple(_TABLE)


def info(name: str) -> KindInfo:
    """The entry of ``name``; KeyError names the known kinds."""
    try:
        return _TABLE[name]
    except KeyError:
        raise KeyError(f"unknown kind {name!r}, expected one of {', '.join(_TABLE)}") from None


def owners(key: str) -> tuple[str, ...]:
    """The kinds that declare ``key`` among their own keys."""
    return tuple(kind.name for kind in _TABLE.values() if key in key_names(kind.params))
