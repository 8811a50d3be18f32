"""Density ramps at matched live counts, and the headline's common range.

A figure over a whole ramp (the median launch time, the slope of memory, the teardowns)
compares different ranges as soon as two backends stopped at different counts: a runtime
ramped to 10,000 pays for the 9,000 containers another never reached. So the report compares
the backends of a family (containers with containers, VMs with VMs) at the same numbers of
live instances, per ramp index (a backend's 1st ramp with the others' 1st, since the first
ramp on a freshly booted host grows its slab caches and later ramps find them grown):

- :func:`tables`: per run, scenario, family and ramp, each backend's launch time per
  instance and host memory per instance (:func:`harness.kinds.density.at_live`) at 1,000,
  5,000 and 10,000 live (the levels some backend reached) and at the most every backend of
  the family reached; a backend that stopped short of a level shows why (the memory floor,
  the time limit, a failure, or its cap) instead of a number; and how each ramp ended.
- :func:`common_range`: the samples the headline reads, each density scenario's steps and
  teardowns cut to the count every ramp of the family reached.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from harness.backends import registry
from harness.kinds import density

if TYPE_CHECKING:
    import pandas as pd

COMMON = "common_live"  # column the headline's density samples get: the family's common count
FAMILY_NAMES = {registry.CONTAINER: "containers", registry.VM: "VMs"}
STEP_METRICS = ("instances_alive", "launch_s", "host_mem_used_bytes")


@dataclass(frozen=True)
class Ramp:
    """One ramp of one backend, from the samples and the run's metadata."""

    run: str
    scenario: str
    backend: str
    ramp: int  # 0: the backend's first ramp of the run
    reached: int  # instances alive at its top
    stopped_by: str | None  # None: not recorded (an older run)
    position: int | None  # its turn in the scenario's sequence of ramps (0 first)
    steps: tuple[tuple[int, float, float], ...]  # alive, launch_s, host memory used (bytes)
    uptime_s: float | None = None  # the host's uptime when the ramp began

    def at(self, level: int) -> dict[str, Any] | None:
        return density.at_live(self.steps, level)

    def why_short(self) -> str:
        """Why the ramp stopped (shown where it did not reach a level)."""
        reason = self.stopped_by
        if reason is None:
            return f"reached {self.reached:,}"
        if reason == "max_instances":
            return f"its cap, {self.reached:,}"
        if reason.startswith("failure"):
            reason = "a failure"
        return f"stopped by {reason.replace('_', ' ')} at {self.reached:,}"


@dataclass
class Table:
    """One run's scenario, family and ramp index: the backends side by side."""

    run: str
    scenario: str
    family: str
    ramp: int
    ramps: dict[str, Ramp]  # backend → its ramp, in the report's backend order
    levels: tuple[int, ...] = field(default=())

    @property
    def common(self) -> int:
        """The most instances every backend's ramp reached (0 if one reached none)."""
        return min((r.reached for r in self.ramps.values()), default=0)


def levels(reached: Iterable[int]) -> tuple[int, ...]:
    """The counts to compare ramps at: :data:`harness.kinds.density.LEVELS` up to the highest
    count reached, and the most every ramp reached (if any reached none: the levels alone)."""
    counts = list(reached)
    if not counts:
        return ()
    found = {level for level in density.LEVELS if level <= max(counts)}
    if min(counts) > 0:
        found.add(min(counts))
    return tuple(sorted(found))


def _ramp_index(value: Any) -> int:
    return 0 if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def _ends(metadata: Mapping[str, Any], scenario: str, backend: str) -> dict[int, dict[str, Any]]:
    """ramp index → the ramp's summary in the run's metadata (an older run: one, ramp 0)."""
    entries = ((metadata.get("density") or {}).get(scenario) or {}).get(backend)
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        return {}
    return {int(entry.get("ramp", 0)): entry for entry in entries if isinstance(entry, dict)}


def ramps(samples: pd.DataFrame, metadata: Mapping[str, Mapping[str, Any]]) -> list[Ramp]:
    """Every density ramp of ``samples`` (run id → metadata gives how each ended)."""
    if samples.empty or "kind" not in samples:
        return []
    data = samples[(samples.kind == "density") & samples.metric.isin(
        [*STEP_METRICS, "max_instances_alive"])]
    if data.empty:
        return []
    data = data.assign(ramp=data.repetition.map(_ramp_index))
    found = []
    for (run, scenario, backend, ramp), group in data.groupby(
            ["run_id", "scenario", "backend", "ramp"], sort=False):
        steps = group[group.metric.isin(STEP_METRICS) & group.step.notna()].pivot_table(
            index="step", columns="metric", values="value").sort_index()
        points: tuple[tuple[int, float, float], ...] = ()
        if set(STEP_METRICS) <= set(steps.columns):
            steps = steps.dropna(subset=list(STEP_METRICS))
            points = tuple((int(row.instances_alive), float(row.launch_s),
                            float(row.host_mem_used_bytes)) for row in steps.itertuples())
        tops = group[group.metric == "max_instances_alive"].value
        reached = int(tops.max()) if len(tops) else max((p[0] for p in points), default=0)
        end = _ends(metadata.get(str(run), {}), str(scenario), str(backend)).get(int(ramp), {})
        position, uptime = end.get("position"), end.get("host_uptime_s")
        found.append(Ramp(str(run), str(scenario), str(backend), int(ramp), reached,
                          end.get("stopped_by"), int(position) if position is not None
                          else None, points, float(uptime) if uptime is not None else None))
    return found


def tables(samples: pd.DataFrame, metadata: Iterable[Mapping[str, Any]]) -> list[Table]:
    """The matched-count tables of every density scenario: per run, scenario, family and ramp
    index, in the order the runs and scenarios came, backends in the registry's order."""
    by_run = {str(meta.get("run_id", "")): meta for meta in metadata}
    order = {name: index for index, name in enumerate(registry.names())}
    grouped: dict[tuple[str, str, str, int], dict[str, Ramp]] = {}
    for ramp in ramps(samples, by_run):
        key = (ramp.run, ramp.scenario, registry.family(ramp.backend), ramp.ramp)
        grouped.setdefault(key, {})[ramp.backend] = ramp
    found = []
    for (run, scenario, family, index), members in grouped.items():
        ordered = dict(sorted(members.items(), key=lambda item: (
            order.get(item[0], len(order)), item[0])))
        found.append(Table(run, scenario, family, index, ordered,
                           levels(r.reached for r in ordered.values())))
    families = {name: index for index, name in enumerate(registry.FAMILIES)}
    runs = {run: index for index, run in enumerate(dict.fromkeys(t.run for t in found))}
    scenarios = {name: index for index, name in enumerate(dict.fromkeys(
        t.scenario for t in found))}
    found.sort(key=lambda t: (runs[t.run], scenarios[t.scenario],
                              families.get(t.family, len(families)), t.ramp))
    return found


def ordinal(ramp: int) -> str:
    """0 → ``1st``, 1 → ``2nd``, ..."""
    number = ramp + 1
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(
        number % 10, "th")
    return f"{number}{suffix}"


def cell(ramp: Ramp, level: int) -> str:
    """``ramp``'s launch time and memory per instance at ``level`` live, or why it has none."""
    point = ramp.at(level)
    if point is None:
        return ramp.why_short()
    from harness.report import units

    return (f"{units.seconds(point['launch_p50_ms'] / 1000)} · "
            f"{units.sig(point['mem_mib_per_instance'])} MiB")


def end(ramp: Ramp) -> str:
    """How ``ramp`` ended: ``memory_floor at 6,000 (turn 2)``."""
    if ramp.stopped_by is None:
        return f"reached {ramp.reached:,} (how it ended: not recorded)"
    when = ([f"turn {ramp.position + 1}"] if ramp.position is not None else []) + (
        [f"host up {_duration(ramp.uptime_s)}"] if ramp.uptime_s is not None else [])
    turn = f" ({', '.join(when)})" if when else ""
    reason = ("a failure (Not as planned, below)" if ramp.stopped_by.startswith("failure")
              else ramp.stopped_by)
    return f"{reason} at {ramp.reached:,}{turn}"


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


LEGEND = (
    "Each cell: **launch** per instance · **host memory** per instance, at N live. Launch: "
    "the median launch time per instance (a batch's start → all READY / batch size) of the "
    f"batches that launched instances between N − N/{density.BAND} and N live; memory: host "
    "memory used since the ramp began (MemAvailable drop) / instances alive. Rows: 1,000, "
    "5,000 and 10,000 live where some backend got there, and the most every backend reached; "
    "a backend that stopped short of N shows why instead. Each backend's k-th ramp is beside "
    "the others' k-th (the ramps ran interleaved, A B … B A, turns counted from 1; the 1st "
    "ramp of a run on a host whose kernel caches are still cold is apart from later ones); "
    "the last row of a ramp says how each ended, in which turn, and how long the host had been "
    "up then."
)


def markdown(found: Sequence[Table]) -> list[str]:
    """Markdown lines: per run, scenario and family a table (rows: ramp and live count, then
    how each ramp ended; a column per backend)."""
    if not found:
        return []
    lines = ["### Density at matched live counts", "", LEGEND, ""]
    several_runs = len({t.run for t in found}) > 1
    groups: dict[tuple[str, str, str], list[Table]] = {}
    for table in found:
        groups.setdefault((table.run, table.scenario, table.family), []).append(table)
    for (run, scenario, family), members in groups.items():
        backends = list(dict.fromkeys(b for t in members for b in t.ramps))
        where = f" (run `{run}`)" if several_runs else ""
        lines += [f"#### {scenario}: {FAMILY_NAMES.get(family, family)}{where}", "",
                  "| ramp | live | " + " | ".join(backends) + " |",
                  "|---|---:|" + "---:|" * len(backends)]
        for table in members:
            for level in table.levels:
                cells = [cell(table.ramps[b], level) if b in table.ramps else "-"
                         for b in backends]
                lines.append(f"| {ordinal(table.ramp)} | {level:,} | " + " | ".join(cells)
                             + " |")
            cells = [end(table.ramps[b]) if b in table.ramps else "-" for b in backends]
            lines.append(f"| {ordinal(table.ramp)} | ended | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def html(found: Sequence[Table]) -> str:
    """The same as :func:`markdown`, as HTML."""
    from harness.report.html import markdown as to_html

    lines = markdown(found)
    return f'<div class="scroll">{to_html(lines)}</div>' if lines else ""


# --- the headline's common range ---------------------------------------------------------------

def common_range(samples: pd.DataFrame) -> pd.DataFrame:
    """``samples`` with each density scenario's per-step readings and teardowns cut to the
    count every ramp of the family reached in that run (its ``COMMON`` column), so the
    headline's launch time, memory slope and teardown compare one range.

    A step is kept if the instances alive after it are at most that count; a teardown (the
    k-th stop of a ramp that reached N: then N − k + 1 were alive) if N − k + 1 is at most
    it. Ramps that reached none do not lower the count. Other samples pass unchanged."""
    import pandas as pd

    if samples.empty or "kind" not in samples or not (samples.kind == "density").any():
        return samples
    data = samples[samples.kind == "density"]
    family = data.backend.astype(str).map(registry.family)
    ramp = data.repetition.map(_ramp_index)
    keys = [data.run_id, data.scenario, data.backend, ramp]
    top = _tops(data, keys)  # (run, scenario, backend, ramp) → instances at its top
    tops = pd.Series(top)
    if tops.empty:
        return samples
    reached = tops[tops > 0]
    common: dict[tuple[str, str, str], int] = {}
    for (run, scenario, backend, _), count in reached.items():
        key = (run, scenario, registry.family(backend))
        common[key] = min(common.get(key, int(count)), int(count))
    limit = pd.Series([common.get((r, s, f), 0) for r, s, f in zip(
        data.run_id, data.scenario, family, strict=True)], index=data.index, dtype=float)
    alive = _alive(data, keys)
    own_top = pd.Series([top.get(k, 0) for k in zip(*keys, strict=True)], index=data.index,
                        dtype=float)
    teardown = data.metric == "teardown_s"
    stop_number = pd.to_numeric(data.instance, errors="coerce")
    alive = alive.where(~teardown, own_top - stop_number + 1)
    keep = alive.isna() | (alive <= limit)
    kept = data[keep].assign(**{COMMON: limit[keep]})
    return pd.concat([samples[samples.kind != "density"], kept]).sort_index()


def _tops(data: pd.DataFrame, keys: list[Any]) -> dict[tuple[Any, ...], int]:
    """Each ramp's top count: its ``max_instances_alive``, else its last step's count."""
    tops: dict[tuple[Any, ...], int] = {}
    for metric in ("instances_alive", "max_instances_alive"):  # the latter wins
        rows = data.metric == metric
        if rows.any():
            values = data.value[rows].groupby([k[rows] for k in keys]).max()
            tops.update({key: int(value) for key, value in values.items()})
    return tops


def _alive(data: pd.DataFrame, keys: list[Any]) -> pd.Series:
    """Per sample of a step, the instances alive after the step (NaN for other samples)."""
    import pandas as pd

    counts = data.metric == "instances_alive"
    lookup = {(*key, step): value for *key, step, value in zip(
        *(k[counts] for k in keys), data.step[counts], data.value[counts], strict=True)}
    return pd.Series([lookup.get((*key, step), math.nan) if pd.notna(step) else math.nan
                      for *key, step in zip(*keys, data.step, strict=True)],
                     index=data.index, dtype=float)


def noted(measures: Sequence[Any], members: pd.DataFrame) -> tuple[Any, ...]:
    """The headline's density measures with the common range in their note (:data:`RANGED`)."""
    if COMMON not in members or members[COMMON].isna().all():
        return tuple(measures)
    span = " / ".join(f"{c:,}" for c in sorted({int(c) for c in members[COMMON].dropna()}))
    return tuple(replace(m, note=RANGED[m.metric].format(span=span)) if m.metric in RANGED
                 else m for m in measures)


RANGED = {  # the headline's density notes once its figures are cut to the common range
    "launch_s": "a batch's start → all READY / batch size, over every ramp's steps up to "
                "{span} live, the most every ramp of the family reached",
    "host_mem_per_instance_bytes": "slope of host memory used vs instances alive (Theil–Sen "
                                   "over a ramp's steps up to {span} live, one value per "
                                   "ramp)",
    "teardown_s": "the stops made with up to {span} alive",
}
