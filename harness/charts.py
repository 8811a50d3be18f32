"""Drawing primitives the kinds' charts share: matplotlib off-screen, saving, labels, numbers.

Every chart reads alone: its title says the scenario, what is measured and the unit; its
labels say each series' backend and variant, and whether it is a container (no accel) or a
VM (and under which accel). SVGs keep their text as text (``svg.fonttype = none``): smaller,
searchable, and rendered by the page's fonts.

Imported only by chart functions (matplotlib takes most of a second to import), never at the
import of a kind module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from harness.backends import registry  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd

PERCENTILES = (50, 95, 99)
FAMILY_NAMES = {registry.CONTAINER: "containers", registry.VM: "VMs"}
METRIC_LABELS = {"start_to_ready_s": "start → READY", "stop_s": "stop → gone"}
matplotlib.rcParams["svg.fonttype"] = "none"


def save(figure: Any, output: Path, stem: str,
         formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write ``figure`` as ``<stem>.png`` and ``<stem>.svg`` into ``output``, then close it."""
    paths = [output / f"{stem}.{suffix}" for suffix in formats]
    with matplotlib.rc_context({"svg.hashsalt": stem}):  # the same ids on every drawing
        for path in paths:
            if path.suffix == ".svg":
                figure.savefig(path, bbox_inches="tight", metadata={"Date": None})
            else:
                figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return paths


class PlainLogFormatter(matplotlib.ticker.LogFormatterSciNotation):
    """Log-axis labels as plain numbers (``2000``, not ``2×10³``), on the ticks matplotlib
    would label anyway (minor ones too when the axis spans less than a decade or two)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def plain_numbers(axis: Any, which: str = "y") -> None:
    """Label a log axis with plain numbers, not powers of ten."""
    target = axis.yaxis if which == "y" else axis.xaxis
    target.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    target.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False,
                                                 minor_thresholds=(1, 0.4)))


def fmt_ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def accel_text(data: pd.DataFrame) -> str:
    """``no accel`` for containers, ``accel tcg`` (or kvm) for VMs."""
    backends = set(data.backend.astype(str))
    if all(registry.family(b) == registry.CONTAINER for b in backends):
        return "container, no accel"
    accels = sorted(set(data.accel.dropna().astype(str)) - {"", "none"})
    return f"VM, accel {'/'.join(accels) or 'unknown'}"


def accel_summary(data: pd.DataFrame) -> str:
    """Per family present: ``containers: no accel · VMs: accel tcg``."""
    parts = []
    families = data.backend.astype(str).map(registry.family)
    for family in registry.FAMILIES:
        members = data[families == family]
        if not members.empty:
            parts.append(f"{FAMILY_NAMES[family]}: {accel_text(members).split(', ', 1)[1]}")
    return " · ".join(parts)


def family_groups(data: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(family, its samples)`` for every family present, containers first."""
    families = data.backend.astype(str).map(registry.family)
    return [(family, data[families == family]) for family in registry.FAMILIES
            if (families == family).any()]


def variant_text(variant: Any) -> str:
    text = "" if variant is None or (isinstance(variant, float) and np.isnan(variant)) \
        else str(variant)
    return text or "no variant"


def latency_chart(samples: pd.DataFrame, scenario: str, metric: str, output: Path) -> list[Path]:
    """Distribution per backend and variant (box + points) on a log axis, p50/p95/p99 marked."""
    data = samples[(samples.scenario == scenario) & (samples.metric == metric)]
    if data.empty:
        return []
    series = list(dict.fromkeys(data.series))
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(series) + 2), 4.8))
    values = [data[data.series == s].value.to_numpy() * 1000 for s in series]
    axis.boxplot(values, showfliers=False, widths=0.5)
    rng = np.random.default_rng(0)
    labels = []
    for index, vals in enumerate(values, start=1):
        axis.scatter(index + rng.uniform(-0.15, 0.15, len(vals)), vals, s=8, alpha=0.4)
        marks = {pct: np.percentile(vals, pct) for pct in PERCENTILES}
        for value, marker in zip(marks.values(), ("o", "^", "v"), strict=True):
            axis.scatter([index + 0.32], [value], marker=marker, color="black", s=22, zorder=3)
        group = data[data.series == series[index - 1]]
        name = str(group.backend.iloc[0])
        rest = series[index - 1].removeprefix(name).strip()  # variant, @ run
        accel = accel_text(group).removeprefix("container, ").removeprefix("VM, ")
        labels.append(f"{name}\n{rest or variant_text(group.variant.iloc[0])} · {accel}\n"
                      + "\n".join(f"p{pct} {fmt_ms(value)}" for pct, value in marks.items())
                      + f"\nn {len(vals)}")
    axis.set_xticks(range(1, len(series) + 1), labels, fontsize=8)
    axis.set_yscale("log")
    plain_numbers(axis)
    label = METRIC_LABELS.get(metric, metric)
    axis.set_ylabel(f"{label} (ms, log scale)")
    axis.set_title(f"{scenario}: {label} per backend and variant, ms (log scale)\n"
                   f"{accel_summary(data)} · p50 ●, p95 ▲, p99 ▼",
                   fontsize=10)
    axis.grid(axis="y", which="both", alpha=0.3)
    return save(figure, output, f"{scenario}-{metric}")
