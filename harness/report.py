"""Charts (PNG and SVG) and a Markdown summary of one or more runs.

Each scenario's charts are drawn by its kind (``charts`` in :mod:`harness.kinds.registry`);
the summary table covers every metric of every kind. With several runs, each backend's
series is labelled ``backend @ run`` so runs sit side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import methodology, results
from harness.backends import registry
from harness.charts import latency_chart
from harness.kinds import registry as kinds
from harness.kinds.density import MIB
from harness.kinds.density import charts as density_charts
from harness.kinds.memory import VIEWS as MEMORY_VIEWS
from harness.kinds.memory import charts as memory_chart
from hostkit.files import atomic_write

# Each kind draws its own charts (its registry entry's ``charts``); these names stay here for
# the notebook and other callers that draw one chart at a time.
__all__ = ["MEMORY_VIEWS", "MIB", "density_charts", "draw_charts", "latency_chart", "load",
           "memory_chart", "summary_table", "write_report"]


def load(run_dirs: list[Path]) -> pd.DataFrame:
    """Samples of the given runs, with a ``series`` column naming backend (and run if several)."""
    frames = []
    for run_dir in run_dirs:
        frame = results.load_samples(run_dir)
        # one fixed order (process, ours, crun, runc, libvirt), not order of appearance
        order = {name: index for index, name in enumerate(registry.names())}
        frame = frame.sort_values("backend", key=lambda b: b.map(order).fillna(len(order)),
                                  kind="stable")
        # never mixed in a series: start variants, and workloads (the variant names the
        # workload and its parameters)
        own_series = frame["variant"].isin(["cold", "warm"]) | (frame["kind"] == "workload")
        frame["series"] = frame["backend"].where(
            ~own_series, frame["backend"] + " " + frame["variant"].astype(str))
        if len(run_dirs) > 1:
            frame["series"] = frame["series"] + " @ " + run_dir.name[:15]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summary_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Per scenario, series and metric: count, median and tail percentiles."""
    grouped = samples.groupby(["scenario", "series", "metric", "unit"], sort=False)["value"]
    table = grouped.agg(
        n="count",
        median="median",
        p95=lambda v: np.percentile(v, 95),
        p99=lambda v: np.percentile(v, 99),
        min="min",
        max="max",
    )
    return table.reset_index()


def draw_charts(samples: pd.DataFrame, output: Path) -> list[Path]:
    """Every scenario's charts, drawn by its kind (a kind without charts, or one this
    installation does not know, e.g. of an old run or a plug-in, draws none)."""
    drawn: list[Path] = []
    for (scenario, kind), _ in samples.groupby(["scenario", "kind"], sort=False):
        draw = kinds.info(str(kind)).charts if str(kind) in kinds.names() else None
        if draw is not None:
            drawn += draw(samples, str(scenario), output)
    return drawn


def _markdown(samples: pd.DataFrame, run_dirs: list[Path], drawn: list[Path]) -> str:
    lines = ["# cvbench report", ""]
    for run_dir in run_dirs:
        metadata = results.read_metadata(run_dir)
        host = metadata.get("host", {})
        lines.append(
            f"- run `{run_dir.name}`: status **{metadata.get('status')}**, "
            f"commit `{str(metadata.get('git_commit', ''))[:12]}`, kernel {host.get('kernel')}, "
            f"{host.get('cpus')} CPUs, cgroups {host.get('cgroup_mode')}, "
            f"accel {metadata.get('accel', {}).get('accel')}"
        )
    lines += ["", "| scenario | backend | metric | n | median | p95 | p99 | unit |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    for row in summary_table(samples).itertuples():
        lines.append(
            f"| {row.scenario} | {row.series} | {row.metric} | {row.n} | {_fmt(row.median)} | "
            f"{_fmt(row.p95)} | {_fmt(row.p99)} | {row.unit} |"
        )
    lines += [""] + [f"![{chart.stem}]({chart.name})" for chart in drawn if chart.suffix == ".png"]
    lines += ["", *methodology.order_effects(samples)]
    for run_dir in run_dirs:
        if len(run_dirs) > 1:
            lines += [f"# Run `{run_dir.name}`", ""]
        lines += methodology.section(results.read_metadata(run_dir))
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:  # a number from a pandas row
    return f"{value:.4g}"


def write_report(run_dirs: list[Path], output: Path | None = None) -> Path:
    """Write every chart and ``summary.md``; return the output directory."""
    output = output or (run_dirs[0] / "report")
    output.mkdir(parents=True, exist_ok=True)
    samples = load(run_dirs)
    drawn = draw_charts(samples, output) if not samples.empty else []
    atomic_write(output / "summary.md", _markdown(samples, run_dirs, drawn))
    return output
