"""Where the time goes: the isolation ladder of a run, as stacked bars and a table.

A run has a ladder when it measured the ``floor`` backend with at least two sets of
isolation steps (labelled backends, ``floor:namespaces`` and the like, each with its
``steps`` option; scenarios/ladder.toml). Its *rungs*, read from the run's metadata (what
each floor backend's ``describe()`` says it did): the family floor (``process``, a plain
fork/exec), then the floor backends from the fewest steps to the most, each measured over
the one before; then every other container backend of the scenario (ours, crun, runc with
everything), each over the floor with the most steps. A rung's *increment* is its median
less the median of the rung it is measured over, in the same run, scenario, metric and
variant: what that step costs.

Each rung's bar stacks the increments of its way up (the first rung's own median at the
bottom, then each step), so its top is the rung's own median and each segment is one step's
cost, the same colour in every bar; a step that costs less than nothing (noise, or a rung
that does less work than the one before) is drawn hatched, downwards. Panels: start →
READY cold and warm (ms), memory per instance by two views (KiB).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends import registry
from harness.report import units

if TYPE_CHECKING:
    import pandas as pd

FLOOR = "floor"  # the backend whose steps make the rungs


@dataclass(frozen=True)
class Rung:
    """One bar: a backend of the run, and the rung whose median its increment is over."""

    backend: str
    over: str | None  # None: the bottom rung
    step: str  # what its increment is, as the legend and the table say it


@dataclass(frozen=True)
class Panel:
    """One panel of a ladder chart: a metric and variant, drawn in ``unit``."""

    title: str
    metric: str
    variant: str
    unit: str  # "ms" or "KiB"


# The panels a ladder chart may have; a scenario's chart has those its samples hold.
PANELS = (
    Panel("start → READY, cold", "start_to_ready_s", "cold", "ms"),
    Panel("start → READY, warm", "start_to_ready_s", "warm", "ms"),
    Panel("host MemAvailable delta / K", "mem_host_delta_per_instance_bytes", "ksm=off", "KiB"),
    Panel("host kernel + process memory delta / K", "mem_host_accounted_per_instance_bytes",
          "ksm=off", "KiB"),
)
CHART = "ladder"  # the chart's name: <scenario>-ladder
CAPTION = ("where the time (or memory) goes: one bar per rung of the isolation ladder (the "
           "floor launcher with one more isolation step each, then the runtimes with every "
           "step), its median stacked from each step's increment over the rung below: start → "
           "READY in ms, cold and warm, or memory per idle instance in KiB by two host-wide "
           "views; hatched: a step below zero (noise, or less work than the rung below).")
SCALE = {"ms": 1e3, "KiB": 1 / 1024}


def rungs(descriptions: Mapping[str, Mapping[str, Any]], backends: Iterable[str]) -> list[Rung]:
    """The rungs among ``backends`` (those of one scenario), from the run's backend
    descriptions (``metadata["backends"]``); empty unless two floor backends with different
    steps are among them."""
    present = list(dict.fromkeys(backends))
    floors = [(name, tuple(descriptions[name]["steps"])) for name in present
              if registry.base(name) == FLOOR and isinstance(
                  descriptions.get(name, {}).get("steps"), list)]
    floors.sort(key=lambda item: len(item[1]))
    if len({steps for _, steps in floors}) < 2:
        return []
    found: list[Rung] = []
    bottom = registry.floors().get(registry.CONTAINER)
    if bottom in present:
        found.append(Rung(bottom, None, f"{bottom} (fork/exec)"))
    previous: tuple[str, ...] = ()
    for name, steps in floors:
        over = found[-1].backend if found else None
        added = [step for step in steps if step not in previous]
        removed = [step for step in previous if step not in steps]
        if over is None:
            step = f"{name} ({', '.join(steps) or 'no step'})"
        elif not previous and not steps:
            step = "+ the floor launcher (no step)"
        else:
            step = " ".join([f"+ {', '.join(added)}" if added else "",
                             f"− {', '.join(removed)}" if removed else ""]).strip() or "+ nothing"
        found.append(Rung(name, over, step))
        previous = steps
    top = floors[-1][0]
    found += [Rung(name, top, f"{name} over {top}") for name in present
              if registry.family(name) == registry.CONTAINER and name != bottom
              and registry.base(name) != FLOOR]
    return found


def steps_table(samples: pd.DataFrame, ladder: list[Rung], metric: str, variant: str
                ) -> pd.DataFrame:
    """Per rung (in ladder order, the index): ``n``, ``median``, ``p95`` of ``metric`` in
    ``variant``, and ``increment``, the median less the median of the rung it is over (its
    own median for the bottom rung); NaN where a rung or the one below has no samples.
    ``samples`` are one run's and one scenario's."""
    import pandas as pd

    data = samples[(samples.metric == metric) & (samples.variant.astype(str) == variant)]
    rows = {}
    for rung in ladder:
        values = data[data.backend == rung.backend].value.astype(float)
        rows[rung.backend] = {"step": rung.step, "over": rung.over or "", "n": len(values),
                              "median": values.median() if len(values) else math.nan,
                              "p95": values.quantile(0.95) if len(values) else math.nan}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["increment"] = [row.median - (table["median"][rung.over] if rung.over else 0.0)
                          for rung, row in zip(ladder, table.itertuples(), strict=True)]
    return table


def segments(table: pd.DataFrame, ladder: list[Rung]) -> dict[str, list[tuple[str, float]]]:
    """Each rung's bar: the increments of its way up from the bottom rung, as ``(step,
    increment)`` pairs bottom first; they add up to the rung's median."""
    by_name = {rung.backend: rung for rung in ladder}
    bars = {}
    for rung in ladder:
        way: list[tuple[str, float]] = []
        current: Rung | None = rung
        while current is not None:
            way.append((current.step, float(table["increment"][current.backend])))
            current = by_name.get(current.over) if current.over else None
        bars[rung.backend] = way[::-1]
    return bars


def charts(samples: pd.DataFrame, metadata: Mapping[str, Mapping[str, Any]], output: Path
           ) -> list[Path]:
    """The ladder chart of every run (``metadata``: run id → its metadata) and scenario that
    has rungs: ``<scenario>-ladder`` (with several runs, ``-<run id>`` after it)."""
    drawn: list[Path] = []
    several = samples.run_id.nunique() > 1
    for (run, scenario), data, ladder, panels in _ladders(samples, metadata):
        suffix = f"-{run}" if several else ""
        drawn += _draw(data, ladder, panels, f"{scenario}{f' @ {run}' if several else ''}",
                       output, f"{scenario}-{CHART}{suffix}")
    return drawn


def _ladders(samples: pd.DataFrame, metadata: Mapping[str, Mapping[str, Any]]
             ) -> list[tuple[tuple[str, str], pd.DataFrame, list[Rung], list[Panel]]]:
    """Per run and scenario with rungs and a panel's samples: its samples, rungs, panels."""
    found = []
    for (run, scenario), data in samples.groupby(["run_id", "scenario"], sort=False):
        ladder = rungs(metadata.get(str(run), {}).get("backends", {}), data.backend.astype(str))
        panels = [panel for panel in PANELS if ((data.metric == panel.metric)
                                                & (data.variant.astype(str) == panel.variant)
                                                ).any()]
        if ladder and panels:
            found.append(((str(run), str(scenario)), data, ladder, panels))
    return found


def captions(drawn: Iterable[Path]) -> dict[str, str]:
    """What each drawn ladder chart shows, by its stem (``<scenario>-ladder[-<run>]``)."""
    return {path.stem: f"{path.stem.split(f'-{CHART}')[0]}: {CAPTION}" for path in drawn
            if f"-{CHART}" in path.stem}


def _draw(data: pd.DataFrame, ladder: list[Rung], panels: list[Panel], title: str,
          output: Path, stem: str) -> list[Path]:
    from matplotlib.patches import Patch

    from harness.charts import plt, save

    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 1, 5.5),
                                squeeze=False)
    colours = {rung.step: f"C{index % 10}" for index, rung in enumerate(ladder)}
    for panel, axis in zip(panels, axes[0], strict=True):
        table = steps_table(data, ladder, panel.metric, panel.variant)
        bars = segments(table, ladder)
        scale = SCALE[panel.unit]
        for position, rung in enumerate(ladder):
            bottom = 0.0
            way = bars[rung.backend]
            if not all(math.isfinite(increment) for _, increment in way):
                continue  # a rung (or one below it) without samples: no bar, not half a bar
            highest = 0.0
            for step, increment in way:
                height = increment * scale
                axis.bar(position, height, bottom=bottom, color=colours[step], width=0.7,
                         hatch="//" if height < 0 else "", edgecolor="white", linewidth=0.5)
                bottom += height
                highest = max(highest, bottom, bottom - height)
            axis.annotate(units.sig(table["median"][rung.backend] * scale),
                          (position, highest), ha="center", va="bottom", fontsize=7,
                          xytext=(0, 2), textcoords="offset points")
        axis.set_xticks(range(len(ladder)), [rung.backend for rung in ladder], rotation=35,
                        ha="right", fontsize=8)
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set_ylabel(f"{panel.title}, {panel.unit} (median)")
        axis.set_title(f"{title}:\n{panel.title}, {panel.unit}", fontsize=10)
        axis.grid(axis="y", alpha=0.3)
        axis.margins(y=0.12)
    legend = {step: Patch(color=colour) for step, colour in colours.items()}
    legend["a step below zero"] = Patch(facecolor="white", edgecolor="grey", hatch="//")
    figure.legend(legend.values(), legend.keys(), fontsize=7, loc="lower center",
                  ncol=min(4, len(legend)), bbox_to_anchor=(0.5, -0.02))
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    return save(figure, output, stem)


def markdown(samples: pd.DataFrame, metadata: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A table per run and scenario with rungs: each rung's median and p95 per panel, and its
    step's cost (the increment of medians over the rung below)."""
    lines: list[str] = []
    for (run, scenario), data, ladder, panels in _ladders(samples, metadata):
        lines += [f"### The isolation ladder: {scenario} (`{run}`)", "",
                  "Each rung's median and p95; the step's cost is the increment of its median "
                  "over the rung below it (the bottom rung: its own median).", ""]
        tables = [steps_table(data, ladder, panel.metric, panel.variant) for panel in panels]
        lines += ["| rung | step | " + " | ".join(
            f"{panel.title}: median, p95 | step's cost" for panel in panels) + " |",
            "|---|---|" + "---|---|" * len(panels)]
        for rung in ladder:
            cells = []
            for panel, table in zip(panels, tables, strict=True):
                row = table.loc[rung.backend]
                cells += [f"{_fmt(row['median'], panel)}, {_fmt(row['p95'], panel)}",
                          _fmt(row["increment"], panel)]
            lines.append(f"| {rung.backend} | {rung.step} | " + " | ".join(cells) + " |")
        lines += ["", *_items(data, ladder)]
    return lines


def _items(data: pd.DataFrame, ladder: list[Rung]) -> list[str]:
    """Each step's increment of each item of the host's memory per instance
    (:mod:`harness.memory_items`: which kernel objects a step costs), KiB; none without
    itemised samples."""
    from harness import memory_items

    items = [item for item in memory_items.ITEMS if item not in memory_items.TOTALS
             and (data.metric == f"mem_item_{item}_bytes").any()]
    if not items:
        return []
    panels = [Panel(item, f"mem_item_{item}_bytes", "ksm=off", "KiB") for item in items]
    tables = [steps_table(data, ladder, panel.metric, panel.variant) for panel in panels]
    lines = ["Itemised (kernel counters, medians; items as `harness.memory_items` names "
             "them): each step's increment per instance, KiB (the bottom rung: its own).", "",
             "| rung | " + " | ".join(f"`{item}`" for item in items) + " |",
             "|---|" + "---|" * len(items)]
    for rung in ladder:
        lines.append(f"| {rung.backend} | " + " | ".join(
            units.sig(_kib(table.loc[rung.backend, "increment"])) for table in tables) + " |")
    return [*lines, ""]


def _kib(value: float) -> float:
    """Bytes as KiB, less than a byte as 0 (a difference of equal medians leaves float dust)."""
    return 0.0 if abs(value) < 1 else value * SCALE["KiB"]


def _fmt(value: float, panel: Panel) -> str:
    return f"{units.sig(value * SCALE[panel.unit])} {panel.unit}" if math.isfinite(value) else "-"
