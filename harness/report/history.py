"""Every metric across runs, in commit order, as asv shows it: ``cvbench report --history``.

For every result metric (host counters left out), one chart: per backend and variant the
median of each run with its interquartile range, absolute on the left and as a ratio to the
family floor of the same run on the right (what stays comparable across machines). The
baseline (``results/baseline/<machine kind>/``, :mod:`harness.baseline`) is a dashed line of
the same colour; every regression the gate finds (each run against the baseline of its machine
kind, or the previous run when there is no baseline, on the ratios to the floors with the
committed thresholds) is a red cross on the line, and listed at the top.

Runs are ordered by the date of their commit (``git`` in the results directory's repository;
a run whose commit git does not know goes by its start time), runs of one commit side by side.
"""

from __future__ import annotations

import logging
import math
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import baseline, normalize, results
from harness.backends import registry
from harness.report import html, units
from hostkit.files import atomic_write

if TYPE_CHECKING:
    import pandas as pd

    from harness.gate.stats import Row as GateRow

log = logging.getLogger(__name__)

PAGE = "index.html"
SUMMARY = "summary.md"
DEFAULT_ALPHA = 0.01  # as CI gates (scripts/quick-gate.sh)
THRESHOLDS = Path("baseline") / "thresholds.toml"
LINESTYLES = {"": "-", "cold": "-", "warm": "--", "ksm=off": "-", "ksm=on": ":"}


@dataclass
class Run:
    """One run of the history, with where it stands and what the gate said of it."""

    directory: Path
    metadata: dict[str, Any]
    commit: str = ""
    commit_time: float | None = None
    gated_against: str = ""
    regressions: list[GateRow] = field(default_factory=list)
    improvements: int = 0
    gate_note: str = ""

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def started(self) -> str:
        return str(self.metadata.get("started_at", ""))

    @property
    def label(self) -> str:
        commit = self.commit[:7] + ("+" if "dirty" in self.commit else "") or "?"
        return f"{commit}\n{self.started[5:16].replace('T', ' ')}"

    @property
    def kind(self) -> str:
        return baseline.kind_of(self.directory)


def find_runs(results_dir: Path) -> list[Run]:
    """Every finished run under ``results_dir`` with samples (not the baselines), in commit
    order."""
    baseline_root = (results_dir / "baseline").resolve()
    found = []
    for run_dir, metadata in results.list_runs(results_dir):
        if run_dir.resolve() == baseline_root or metadata.get("status") == "running":
            continue
        if not (run_dir / "samples.csv").is_file():
            continue
        found.append(Run(run_dir, metadata, commit=str(metadata.get("git_commit", ""))))
    times = commit_times(results_dir, [run.commit.removesuffix("-dirty") for run in found])
    for run in found:
        run.commit_time = times.get(run.commit.removesuffix("-dirty"))
    found.sort(key=_order)
    return found


def _order(run: Run) -> tuple[float, str]:
    started = _epoch(run.started)
    return (run.commit_time if run.commit_time is not None else started, run.started)


def _epoch(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


def commit_times(where: Path, commits: Sequence[str]) -> dict[str, float]:
    """Commit → its committer date (seconds), for the commits the repository around ``where``
    knows; {} without git."""
    wanted = sorted({c for c in commits if c and c != "unknown"})
    if not wanted:
        return {}
    try:
        check = subprocess.run(["git", "-C", str(where), "cat-file", "--batch-check"],
                               input="\n".join(wanted) + "\n", capture_output=True, text=True,
                               timeout=10)
        known = [line.split()[0] for line in check.stdout.splitlines()
                 if line.endswith(tuple("0123456789")) and " commit " in line]
        if not known:
            return {}
        shown = subprocess.run(["git", "-C", str(where), "show", "-s", "--format=%H %ct",
                                *known], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as error:
        log.info("no commit dates (%s): runs go by their start time", error)
        return {}
    times = {}
    for line in shown.stdout.splitlines():
        sha, _, stamp = line.partition(" ")
        if stamp.isdigit():
            times[sha] = float(stamp)
    # the metadata may hold an abbreviated commit: map what was asked for
    return {c: t for c in wanted for sha, t in times.items() if sha.startswith(c)}


def gate(runs: list[Run], results_dir: Path, alpha: float, thresholds_file: Path | None
         ) -> Path | None:
    """Run the gate on every run (against the baseline of its kind, else the previous run);
    the baseline root used, if any."""
    from harness.gate.compare import compare_runs
    from harness.gate.errors import CompareError
    from harness.gate.thresholds import Thresholds

    candidate_root = results_dir / "baseline"
    root = candidate_root if baseline.baselines(candidate_root) else None
    path = thresholds_file or (results_dir / THRESHOLDS)
    try:
        thresholds = Thresholds.load(path) if path.is_file() else Thresholds()
    except CompareError as error:
        log.warning("%s; the gate uses the default thresholds", error)
        thresholds = Thresholds()
    for index, run in enumerate(runs):
        against = root if root is not None else (runs[index - 1].directory if index else None)
        if against is None:
            run.gate_note = "first run, no baseline: not gated"
            continue
        try:
            comparison = compare_runs(against, run.directory, thresholds, alpha,
                                      normalized=True, allow_image_change=True)
        except (CompareError, results.ResultsError) as error:
            run.gate_note = f"not gated: {error}"
            continue
        run.gated_against = (f"previous run {comparison.baseline}" if root is None else
                             f"baseline of {baseline.choose(root, run.kind).kind}")
        run.regressions = comparison.regressions
        run.improvements = len(comparison.improvements)
    return root


def _stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Median, quartiles and n per scenario, backend, variant and metric."""
    frame = frame.assign(variant=frame.variant.map(normalize.plain))
    grouped = frame.groupby(["scenario", "backend", "variant", "metric", "unit"], sort=False)
    table = grouped.value.describe(percentiles=[0.25, 0.5, 0.75])[["count", "25%", "50%", "75%"]]
    return table.rename(columns={"count": "n", "25%": "q1", "50%": "median", "75%": "q3"}) \
        .reset_index()


def history_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run, scenario, backend, variant and metric: ``median``, ``q1``, ``q3``,
    ``n``, ``unit`` and the same of the ratio to the family floor (``ratio_*``)."""
    import pandas as pd

    frames = []
    for index, run in enumerate(runs):
        samples = results.load_samples(run.directory)
        absolute = _stats(samples[~normalize.is_host_reading(samples)])
        # computed afresh, not read from normalized.csv: an older run's file may hold ratios
        # to another floor (VMs to process), and a line must not change floors half-way
        ratios = normalize.normalize(samples)
        if not ratios.empty:
            ratios = _stats(ratios.assign(metric=ratios.metric.map(normalize.base_metric)))
            ratios = ratios.drop(columns="unit").rename(columns={
                "median": "ratio_median", "q1": "ratio_q1", "q3": "ratio_q3", "n": "ratio_n"})
            absolute = absolute.merge(ratios, how="left",
                                      on=["scenario", "backend", "variant", "metric"])
        frames.append(absolute.assign(run=index, run_id=run.name))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def baseline_frame(root: Path | None, runs: list[Run]) -> tuple[pd.DataFrame | None, str]:
    """The medians of the baseline of the newest run's machine kind (else the newest one)."""
    if root is None:
        return None, ""
    kind = runs[-1].kind if runs else ""
    choice = baseline.choose(root, kind)
    fake = Run(choice.directory, results.read_metadata(choice.directory))
    frame = history_frame([fake])
    commit = str(fake.metadata.get("git_commit", ""))[:12]
    return frame, f"baseline {choice.kind} ({commit}, {fake.started[:10]})"


def _series(frame: pd.DataFrame) -> list[tuple[str, str]]:
    order = {name: i for i, name in enumerate(registry.names())}
    pairs = {(str(b), str(v)) for b, v in zip(frame.backend, frame.variant, strict=True)}
    return sorted(pairs, key=lambda p: (order.get(p[0], len(order)), p[0], p[1]))


def chart(frame: pd.DataFrame, base: pd.DataFrame | None, base_label: str,
          runs: list[Run], scenario: str, metric: str, output: Path) -> Path:
    """The metric's two panels (absolute, ratio to the floor) as an SVG in ``output``."""
    import numpy as np

    from harness.charts import METRIC_LABELS, plain_numbers, plt, save

    data = frame[(frame.scenario == scenario) & (frame.metric == metric)]
    unit = str(data.unit.iloc[0])
    factor, unit_name = units.scale(unit, data["median"])
    has_ratio = "ratio_median" in data and data.ratio_median.notna().any()
    figure, axes = plt.subplots(1, 2 if has_ratio else 1, figsize=(14 if has_ratio else 9, 4),
                                squeeze=False, layout="constrained")
    panels = [(axes[0][0], "", factor, f"median, {unit_name} (bar: quartiles)")]
    if has_ratio:
        panels.append((axes[0][1], "ratio_", 1.0,
                       "median ratio to the family floor, same run and variant"))
    backends = list(dict.fromkeys(b for b, _ in _series(data)))
    regressions = {(r.backend, r.variant, i) for i, run in enumerate(runs)
                   for r in run.regressions
                   if r.scenario == scenario and normalize.base_metric(r.metric) == metric}
    for backend, variant in _series(data):
        rows = data[(data.backend == backend) & (data.variant == variant)].sort_values("run")
        colour = f"C{backends.index(backend) % 10}"
        style = LINESTYLES.get(variant, "-.")
        name = f"{backend} {variant}".strip()
        for axis, prefix, scale, _ in panels:
            values = rows[f"{prefix}median"] * scale
            if values.isna().all():
                continue
            low = (rows[f"{prefix}median"] - rows[f"{prefix}q1"]) * scale
            high = (rows[f"{prefix}q3"] - rows[f"{prefix}median"]) * scale
            axis.errorbar(rows.run, values, yerr=[low.fillna(0), high.fillna(0)], color=colour,
                          linestyle=style, marker="o", markersize=4, capsize=2, label=name)
            bad = rows[[(backend, variant, int(r)) in regressions for r in rows.run]]
            if not bad.empty:
                axis.scatter(bad.run, bad[f"{prefix}median"] * scale, marker="X", s=120,
                             color="red", zorder=5, label=f"regression ({name})")
            if base is not None:
                line = base[(base.scenario == scenario) & (base.metric == metric)
                            & (base.backend == backend) & (base.variant == variant)]
                if not line.empty and not math.isnan(line[f"{prefix}median"].iloc[0]):
                    axis.axhline(float(line[f"{prefix}median"].iloc[0]) * scale, color=colour,
                                 linestyle=(0, (6, 3)), linewidth=1, alpha=0.7)
    for axis, _, _, ylabel in panels:
        axis.set_ylabel(ylabel, fontsize=8)
        positive = [v for line in axis.get_lines() for v in np.asarray(line.get_ydata(), float)
                    if np.isfinite(v)]
        if positive and min(positive) > 0 and max(positive) / min(positive) > 20:
            axis.set_yscale("log")
            plain_numbers(axis)
        axis.set_xticks(range(len(runs)), [run.label for run in runs], fontsize=7,
                        rotation=0 if len(runs) <= 8 else 60)
        axis.set_xlim(-0.5, len(runs) - 0.5)
        axis.grid(alpha=0.3)
    handles, labels = panels[0][0].get_legend_handles_labels()
    if base is not None:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="grey", linestyle=(0, (6, 3))))
        labels.append(base_label)
    figure.legend(handles, labels, fontsize=7, loc="outside right upper")
    accel = ", ".join(sorted(set(runs_accels(runs)) - {"", "none"})) or "none"
    label = METRIC_LABELS.get(metric, metric)
    figure.suptitle(f"{scenario}: {label} ({metric}) across runs in commit order, {unit_name}; "
                    f"containers: no accel, VMs: accel {accel}", fontsize=10)
    stem = f"history-{scenario}-{metric}"
    return save(figure, output, stem, formats=("svg",))[0]


def runs_accels(runs: list[Run]) -> list[str]:
    return [str(run.metadata.get("accel", {}).get("accel", "")) for run in runs]


def _regression_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        for row in run.regressions:
            rows.append([run.name, run.commit[:12], row.scenario, row.backend, row.variant or "-",
                         row.metric, units.ratio(row.ratio),
                         f"{row.p_value:.2g}", f"{row.threshold:.0%}"])
    return rows


def _gate_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for index, run in enumerate(runs):
        outcome = run.gate_note or (f"{len(run.regressions)} regression(s), "
                                    f"{run.improvements} improvement(s)")
        rows.append([str(index), run.name, run.commit[:12], run.started[:16], run.kind,
                     str(run.metadata.get("status", "")), run.gated_against or "-", outcome])
    return rows


GATE_HEADERS = ("#", "run", "commit", "started", "machine kind", "status", "gated against",
                "gate")
REGRESSION_HEADERS = ("run", "commit", "scenario", "backend", "variant", "metric",
                      "× baseline", "p", "threshold")


def page(runs: list[Run], frame: pd.DataFrame, charts: dict[tuple[str, str], Path],
         base_label: str, alpha: float, results_dir: Path) -> str:
    body = ["<h1>cvbench history</h1>",
            f'<p class="lede">{len(runs)} run(s) under <code>{html.esc(results_dir)}</code>, '
            "in commit order (date of the commit; runs of one commit side by side). Each point "
            "is a run's median, its bar the interquartile range; left the absolute figure, right "
            "the ratio to the family floor (<code>process</code> for containers, "
            "<code>qemu</code> for VMs) of the same run and variant. "
            + (f"Dashed: the {html.esc(base_label)}. " if base_label else "No baseline. ")
            + f"Red cross: a regression the gate found (alpha {alpha:g}, ratios to the floors, "
            "the committed thresholds).</p>",
            '<section id="gate">', "<h2>What the gate found</h2>"]
    regressions = _regression_rows(runs)
    body.append(html.table(REGRESSION_HEADERS, regressions, numeric=(6, 7, 8),
                           caption="Regressions", css_class="regressions")
                if regressions else "<p>No regression found in any run.</p>")
    body.append(html.table(GATE_HEADERS, _gate_rows(runs), numeric=(0,), caption="Runs"))
    body.append("</section>")
    body.append('<section id="charts">')
    scenario = None
    for index, ((name, metric), path) in enumerate(charts.items()):
        if name != scenario:
            body.append(f"<h2>{html.esc(name)}</h2>")
            scenario = name
        body.append(html.figure(html.svg(path, f"h{index}"),
                                f"{name}: {metric}, median per run (bar: quartiles)",
                                f"chart-{name}-{metric}"))
        body.append(_data_table(frame, name, metric, runs))
    body.append("</section>")
    return html.page("cvbench history", body)


def _data_table(frame: pd.DataFrame, scenario: str, metric: str, runs: list[Run]) -> str:
    data = frame[(frame.scenario == scenario) & (frame.metric == metric)]
    unit = str(data.unit.iloc[0])
    series = _series(data)
    headers = ["#", "commit", *(f"{b} {v}".strip() for b, v in series)]
    rows = []
    for index, run in enumerate(runs):
        cells = [str(index), run.commit[:7]]
        for backend, variant in series:
            match = data[(data.run == index) & (data.backend == backend)
                         & (data.variant == variant)]
            if match.empty:
                cells.append("")
                continue
            row = match.iloc[0]
            ratio = row.get("ratio_median", math.nan)
            cells.append(units.human(row["median"], unit) + (
                f" ({units.ratio(ratio)})" if isinstance(ratio, float) and math.isfinite(ratio)
                else ""))
        rows.append(cells)
    return ("<details><summary>The figures (median, and its ratio to the floor)</summary>"
            + html.table(headers, rows, numeric=tuple(range(2, len(headers)))) + "</details>")


def markdown(runs: list[Run], base_label: str) -> str:
    lines = ["# cvbench history", "",
             f"{len(runs)} run(s) in commit order; {base_label or 'no baseline'}.", ""]
    regressions = _regression_rows(runs)
    if regressions:
        lines += ["| " + " | ".join(REGRESSION_HEADERS) + " |",
                  "|" + "---|" * len(REGRESSION_HEADERS)]
        lines += ["| " + " | ".join(row) + " |" for row in regressions]
    else:
        lines.append("No regression found in any run.")
    lines += ["", "| " + " | ".join(GATE_HEADERS) + " |", "|" + "---|" * len(GATE_HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
              for row in _gate_rows(runs)]
    return "\n".join(lines) + "\n"


def write_history(results_dir: Path, output: Path | None = None,
                  alpha: float = DEFAULT_ALPHA, thresholds_file: Path | None = None) -> Path:
    """Write ``index.html`` and ``summary.md`` of every run under ``results_dir`` into
    ``output`` (default ``<results_dir>/history``); return ``output``.

    ResultsError when there is no run.
    """
    results_dir = Path(results_dir)
    output = output or (results_dir / "history")
    runs = find_runs(results_dir)
    if not runs:
        raise results.ResultsError(f"{results_dir}: no run with samples here")
    root = gate(runs, results_dir, alpha, thresholds_file)
    frame = history_frame(runs)
    base, base_label = baseline_frame(root, runs)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cvbench-history-") as scratch:
        charts = {}
        for (scenario, metric), _ in frame.groupby(["scenario", "metric"], sort=False):
            charts[(str(scenario), str(metric))] = chart(
                frame, base, base_label, runs, str(scenario), str(metric), Path(scratch))
        text = page(runs, frame, charts, base_label, alpha, results_dir)
    atomic_write(output / PAGE, text)
    atomic_write(output / SUMMARY, markdown(runs, base_label))
    log.info("history of %d run(s) written to %s", len(runs), output)
    return output
