"""Charts (PNG and SVG) and a Markdown summary of one or more runs.

With several runs, each backend's series is labelled ``backend @ run`` so runs sit side by side.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

from hostkit.files import atomic_write

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness import results  # noqa: E402
from harness.backends import registry  # noqa: E402

PERCENTILES = (50, 95, 99)
MIB = 1024 * 1024
MEMORY_VIEWS = {
    "mem_host_delta_per_instance_bytes": "host MemAvailable delta / K",
    "mem_host_accounted_per_instance_bytes": "host kernel + process memory delta / K",
    "mem_pss_bytes": "PSS of its processes",
    "mem_cgroup_bytes": "cgroup usage",
    "mem_vmm_overhead_bytes": "QEMU overhead (guest RAM excluded)",
}


def load(run_dirs: list[Path]) -> pd.DataFrame:
    """Samples of the given runs, with a ``series`` column naming backend (and run if several)."""
    frames = []
    for run_dir in run_dirs:
        frame = results.load_samples(run_dir)
        # one fixed order (process, ours, crun, runc, libvirt), not order of appearance
        order = {name: index for index, name in enumerate(registry.names())}
        frame = frame.sort_values("backend", key=lambda b: b.map(order).fillna(len(order)),
                                  kind="stable")
        frame["series"] = frame["backend"] if len(run_dirs) == 1 else (
            frame["backend"] + " @ " + run_dir.name[:15]
        )
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


def _save(figure: plt.Figure, output: Path, stem: str) -> list[Path]:
    paths = [output / f"{stem}.png", output / f"{stem}.svg"]
    for path in paths:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return paths


def latency_chart(samples: pd.DataFrame, scenario: str, metric: str, output: Path) -> list[Path]:
    """Distribution per backend (box + points) on a log axis, with p50/p95/p99 marked."""
    data = samples[(samples.scenario == scenario) & (samples.metric == metric)]
    if data.empty:
        return []
    series = list(dict.fromkeys(data.series))
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(series) + 2), 4.5))
    values = [data[data.series == s].value.to_numpy() * 1000 for s in series]
    axis.boxplot(values, showfliers=False, widths=0.5)
    rng = np.random.default_rng(0)
    labels = []
    for index, vals in enumerate(values, start=1):
        axis.scatter(index + rng.uniform(-0.15, 0.15, len(vals)), vals, s=8, alpha=0.4)
        marks = {pct: np.percentile(vals, pct) for pct in PERCENTILES}
        for value, marker in zip(marks.values(), ("o", "^", "v"), strict=True):
            axis.scatter([index + 0.32], [value], marker=marker, color="black", s=22, zorder=3)
        labels.append(f"{series[index - 1]}\n" + "\n".join(
            f"p{pct} {_fmt_ms(value)}" for pct, value in marks.items()))
    axis.set_xticks(range(1, len(series) + 1), labels, fontsize=8)
    axis.set_yscale("log")
    axis.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_ylabel(f"{metric.removesuffix('_s')} (ms, log scale)")
    axis.set_title(f"{scenario}: {metric} per backend (p50 ●, p95 ▲, p99 ▼)")
    axis.grid(axis="y", which="both", alpha=0.3)
    return _save(figure, output, f"{scenario}-{metric}")


def density_charts(samples: pd.DataFrame, scenario: str, output: Path) -> list[Path]:
    """Instances alive vs host memory used, and launch latency vs instances alive."""
    data = samples[samples.scenario == scenario]
    if data.empty:
        return []
    figure, (memory_axis, latency_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for series, group in data.groupby("series", sort=False):
        steps = group.pivot_table(index="step", columns="metric", values="value")
        if {"instances_alive", "host_mem_used_bytes"} <= set(steps.columns):
            used = steps.host_mem_used_bytes / MIB
            positive = used > 0  # the first steps can read below the baseline: noise
            memory_axis.plot(steps.instances_alive[positive], used[positive], marker=".",
                             label=series)
        if {"instances_alive", "launch_s"} <= set(steps.columns):
            latency_axis.plot(steps.instances_alive, steps.launch_s * 1000, marker=".",
                              label=series)
    memory_axis.set_xlabel("instances alive (log scale)")
    memory_axis.set_ylabel("host memory used (MiB, log scale)")
    memory_axis.set_xscale("log")
    memory_axis.set_yscale("log")
    memory_axis.set_title(f"{scenario}: host memory vs instances")
    latency_axis.set_xlabel("instances alive")
    latency_axis.set_ylabel("launch time per instance (ms, log scale)")
    latency_axis.set_yscale("log")
    latency_axis.set_title(f"{scenario}: launch latency vs instances")
    for axis in (memory_axis, latency_axis):
        axis.grid(alpha=0.3, which="both")
        axis.legend()
        axis.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    return _save(figure, output, f"{scenario}-density")


def memory_chart(samples: pd.DataFrame, scenario: str, output: Path) -> list[Path]:
    """Bars per backend (and KSM variant) with the per-instance memory views."""
    data = samples[(samples.scenario == scenario) & samples.metric.isin(MEMORY_VIEWS)].copy()
    if data.empty:
        return []
    data["label"] = data.series + data.variant.fillna("").map(
        lambda v: f" ({v})" if v and v != "ksm=off" else ""
    )
    medians = data.groupby(["label", "metric"], sort=False).value.median().unstack("metric")
    views = [m for m in MEMORY_VIEWS if m in medians.columns]
    figure, axis = plt.subplots(figsize=(max(7, 1.5 * len(medians) + 3), 4.5))
    width = 0.8 / len(views)
    positions = np.arange(len(medians))
    for offset, metric in enumerate(views):
        values = medians[metric] / MIB
        bars = axis.bar(positions + offset * width, values.clip(lower=1e-3), width,
                        label=MEMORY_VIEWS[metric])
        labels = [f"{v:.3g}" if v > 0 else "≤0 (noise)" for v in values]
        axis.bar_label(bars, labels, fontsize=7, rotation=90, padding=2)
    axis.set_xticks(positions + width * (len(views) - 1) / 2, medians.index, rotation=15)
    axis.set_ylabel("MiB per instance (log scale)")
    axis.set_yscale("log")
    axis.set_title(f"{scenario}: memory per instance")
    axis.legend(fontsize=8)
    axis.grid(axis="y", which="both", alpha=0.3)
    return _save(figure, output, f"{scenario}-memory")


def _markdown(samples: pd.DataFrame, run_dirs: list[Path], charts: list[Path]) -> str:
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
    lines += [""] + [f"![{chart.stem}]({chart.name})" for chart in charts if chart.suffix == ".png"]
    return "\n".join(lines) + "\n"


def _fmt_ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def write_report(run_dirs: list[Path], output: Path | None = None) -> Path:
    """Write every chart and ``summary.md``; return the output directory."""
    output = output or (run_dirs[0] / "report")
    output.mkdir(parents=True, exist_ok=True)
    samples = load(run_dirs)
    charts: list[Path] = []
    if not samples.empty:
        for (scenario, kind), _ in samples.groupby(["scenario", "kind"], sort=False):
            if kind == "startup":
                charts += latency_chart(samples, scenario, "start_to_ready_s", output)
                charts += latency_chart(samples, scenario, "stop_s", output)
            elif kind == "density":
                charts += density_charts(samples, scenario, output)
            elif kind == "memory":
                charts += memory_chart(samples, scenario, output)
    atomic_write(output / "summary.md", _markdown(samples, run_dirs, charts))
    return output
