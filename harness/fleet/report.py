"""The report of a fleet directory: its hosts, and each metric per host and backend side by side.

:func:`harness.report.write_report` calls two functions here and nothing else:
:func:`label_hosts` (each series gets ``@ host``, so charts and the summary table keep hosts
apart) and :func:`section` (the Markdown of a fleet directory in place of a single run's
header and methodology). The side-by-side tables give, per host, the median ratio to that
host's own floor (``process`` for containers, ``qemu`` for VMs), so hosts of different speed
compare fairly, and then the absolute medians.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from harness import methodology, normalize, results
from harness.fleet import fleetdir

FACT_COLUMNS = ("status", "kernel", "CPU", "cores", "memory", "accel", "run")


def is_fleet(run_dir: Path) -> bool:
    return fleetdir.is_fleet(run_dir)


def label_hosts(frame: pd.DataFrame) -> pd.DataFrame:
    """Samples with ``series`` suffixed ``@ host`` where a ``host`` column says one."""
    if fleetdir.HOST_COLUMN not in frame.columns or "series" not in frame.columns:
        return frame
    host = frame[fleetdir.HOST_COLUMN].fillna("").astype(str)
    frame["series"] = frame["series"].where(host == "", frame["series"] + " @ " + host)
    return frame


def per_host_ratios(samples: pd.DataFrame) -> pd.DataFrame:
    """Every host's samples as ratios to that host's own floors, with the ``host`` column."""
    frames = []
    for host in fleetdir.hosts_of(samples):
        ratios = normalize.normalize(samples[samples[fleetdir.HOST_COLUMN] == host])
        ratios[fleetdir.HOST_COLUMN] = host
        frames.append(ratios)
    if not frames:
        return pd.DataFrame(columns=[*results.SAMPLE_COLUMNS, fleetdir.HOST_COLUMN])
    return pd.concat(frames, ignore_index=True)


def side_by_side(samples: pd.DataFrame) -> pd.DataFrame:
    """Median per scenario, backend, variant and metric (rows) and host (columns)."""
    hosts = fleetdir.hosts_of(samples)
    if samples.empty or not hosts:
        return pd.DataFrame()
    frame = samples.copy()
    frame["variant"] = frame["variant"].map(normalize.plain)
    table = frame.pivot_table(index=["scenario", "backend", "variant", "metric", "unit"],
                              columns=fleetdir.HOST_COLUMN, values="value", aggfunc="median",
                              sort=False)
    return table.reindex(columns=hosts)


def _markdown_table(table: pd.DataFrame, hosts: list[str]) -> list[str]:
    lines = ["| scenario | backend | metric | " + " | ".join(hosts) + " |",
             "|---|---|---|" + "---:|" * len(hosts)]
    for (scenario, backend, variant, metric, unit), row in table.iterrows():
        name = f"{metric} [{variant}]" if variant else str(metric)
        cells = [_fmt(row.get(host), str(unit)) for host in hosts]
        lines.append(f"| {scenario} | {backend} | {name} | " + " | ".join(cells) + " |")
    return lines


def _fmt(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "ratio":
        return f"{value:.3g}×"
    if unit == "s":
        return f"{value:.3g} s" if abs(value) >= 1 else f"{value * 1000:.3g} ms"
    if unit == "bytes":
        return f"{value / (1024 * 1024):.3g} MiB"
    return f"{value:.4g} {unit}".rstrip()


def run_line(fleet_dir: Path) -> str:
    """The report's one line about a fleet directory (where a run gets its own)."""
    metadata = results.read_metadata(fleet_dir)
    hosts = metadata.get("hosts", {})
    done = sum(1 for entry in hosts.values() if entry.get("status") == "complete")
    return (f"- fleet run `{fleet_dir.name}`: status **{metadata.get('status')}**, "
            f"{done} of {len(hosts)} host(s) complete, commit "
            f"`{str(metadata.get('git_commit', ''))[:12]}`, seed `{metadata.get('order_seed')}`")


def hosts_table(metadata: dict[str, Any]) -> list[str]:
    lines = ["| host | " + " | ".join(FACT_COLUMNS) + " | error |",
             "|---|" + "---|" * (len(FACT_COLUMNS) + 1)]
    for name, entry in metadata.get("hosts", {}).items():
        facts, host = entry.get("facts", {}), entry.get("host", {})
        memory = facts.get("memtotal_mb")
        cells = [entry.get("status", ""), host.get("kernel") or facts.get("kernel", ""),
                 host.get("cpu_model", ""), str(host.get("cpus") or facts.get("processor_vcpus")
                                                or ""),
                 f"{memory / 1024:.1f} GiB" if isinstance(memory, int | float) else "",
                 entry.get("accel", {}).get("accel", ""), f"`{entry.get('run_id') or '-'}`",
                 str(entry.get("error") or "")]
        lines.append(f"| {name} | " + " | ".join(str(c).replace("|", "\\|") for c in cells)
                     + " |")
    return lines


def section(fleet_dir: Path, samples: pd.DataFrame | None = None) -> list[str]:
    """Markdown of a fleet directory: hosts, the side-by-side tables, the methodology."""
    metadata = results.read_metadata(fleet_dir)
    if samples is None:
        samples = fleetdir.load(fleet_dir)
    samples = samples[samples.get("run_id", pd.Series(dtype=str)).isin(
        [entry.get("run_id") for entry in metadata.get("hosts", {}).values()])] \
        if "run_id" in samples.columns else samples
    hosts = fleetdir.hosts_of(samples)
    lines = [f"## Fleet `{fleet_dir.name}`", "", *hosts_table(metadata), ""]
    if hosts:
        ratios = side_by_side(per_host_ratios(samples))
        lines += ["### Each host against its own floors", "",
                  "Median ratio of each backend to the floor measured on the same host in the "
                  "same run (`process` for containers, `qemu` for VMs): hosts of different "
                  "speed compare fairly.", ""]
        lines += _markdown_table(ratios, hosts) if not ratios.empty else [
            "No ratios: the scenario has no floor backend (`process` or `qemu`)."]
        lines += ["", "### Medians per host", "", *_markdown_table(side_by_side(samples), hosts),
                  ""]
    runs = fleetdir.host_runs(fleet_dir)
    if runs:
        first = next(iter(runs))
        lines += [f"Every host ran commit `{str(metadata.get('copied_commit', ''))[:12]}` with "
                  f"seed `{metadata.get('order_seed')}`; the methodology below is host "
                  f"{first}'s (the others' is the same code).", ""]
        lines += methodology.section(results.read_metadata(runs[first]))
    return lines
