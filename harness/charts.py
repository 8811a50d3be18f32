"""Drawing primitives the kinds' charts share: matplotlib off-screen, saving, number formats.

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

if TYPE_CHECKING:
    import pandas as pd

PERCENTILES = (50, 95, 99)


def save(figure: Any, output: Path, stem: str) -> list[Path]:
    """Write ``figure`` as ``<stem>.png`` and ``<stem>.svg`` into ``output``, then close it."""
    paths = [output / f"{stem}.png", output / f"{stem}.svg"]
    for path in paths:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return paths


def plain_numbers(axis: Any) -> None:
    """Label a (log) y axis with plain numbers, not powers of ten."""
    axis.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def fmt_ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


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
            f"p{pct} {fmt_ms(value)}" for pct, value in marks.items()))
    axis.set_xticks(range(1, len(series) + 1), labels, fontsize=8)
    axis.set_yscale("log")
    plain_numbers(axis)
    axis.set_ylabel(f"{metric.removesuffix('_s')} (ms, log scale)")
    axis.set_title(f"{scenario}: {metric} per backend (p50 ●, p95 ▲, p99 ▼)")
    axis.grid(axis="y", which="both", alpha=0.3)
    return save(figure, output, f"{scenario}-{metric}")
