"""Ratios against the in-run ``process`` floor, so runs on different machines compare.

Every sample of a backend other than ``process`` is divided by the median of the ``process``
samples of the same run, scenario, metric and variant. The result has the columns of
``samples.csv``; metric names get the suffix ``_vs_process`` and the unit is ``ratio``.

Left out: the ``process`` backend itself, metrics the floor lacks (or whose floor median is not
a positive number), and readings of the host's state (``host_*``, ``ksm_*``,
``instances_alive``): density records them at every step as points of a curve, and dividing
them by the floor's median over its own, different, ramp means nothing. Per-step outcomes such
as the density scenario's ``launch_s`` are kept.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from harness import results

FLOOR_BACKEND = "process"
SUFFIX = "_vs_process"
UNIT = "ratio"
FILE_NAME = "normalized.csv"
_INTEGER_COLUMNS = ("guest_memory_mib", "repetition", "instance", "step")


def _blank(column):
    """True where a (CSV-loaded) dimension is empty: NaN or ''."""
    return column.isna() | (column.astype(str) == "")


HOST_READING_PREFIXES = ("host_", "ksm_")
HOST_READINGS = ("instances_alive",)


def is_host_reading(samples):
    """Mask of readings of the host's state (curve points, counters), not per-instance outcomes."""
    metric = samples["metric"].astype(str).map(base_metric)
    return metric.str.startswith(HOST_READING_PREFIXES) | metric.isin(HOST_READINGS)


def base_metric(metric: str) -> str:
    """``start_to_ready_s_vs_process`` -> ``start_to_ready_s``."""
    return metric.removesuffix(SUFFIX)


def normalize(samples):
    """Samples (of one run or many, e.g. ``results.load_all()``) as ratios to their floor."""
    import pandas as pd

    columns = list(results.SAMPLE_COLUMNS)
    if samples.empty:
        return pd.DataFrame(columns=columns)
    frame = samples[~is_host_reading(samples)].copy()
    frame["_variant"] = frame["variant"].where(~_blank(frame["variant"]), "")
    keys = ["run_id", "scenario", "metric", "_variant"]
    floor_rows = frame[frame.backend == FLOOR_BACKEND]
    floors = floor_rows.groupby(keys, sort=False)["value"].median().rename("_floor")
    merged = frame[frame.backend != FLOOR_BACKEND].join(floors, on=keys, how="inner")
    merged = merged[(merged["_floor"] > 0) & merged["_floor"].map(math.isfinite)]
    merged["value"] = merged["value"] / merged["_floor"]
    merged["metric"] = merged["metric"] + SUFFIX
    merged["unit"] = UNIT
    return merged[columns].reset_index(drop=True)


def plain(value) -> str:
    """A dimension as samples.csv writes it: ``128`` rather than ``128.0``, '' for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def to_csv(normalized) -> str:
    frame = normalized.copy()
    for column in _INTEGER_COLUMNS:
        frame[column] = frame[column].map(plain)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, columns=list(results.SAMPLE_COLUMNS))
    return buffer.getvalue()


def write_normalized(run_dir: Path) -> Path:
    """Write ``normalized.csv`` next to the run's ``samples.csv`` (atomically); its path."""
    run_dir = Path(run_dir)
    path = run_dir / FILE_NAME
    results.atomic_write(path, to_csv(normalize(results.load_samples(run_dir))))
    return path


def load_normalized(run_dir: Path):
    """The run's normalized samples: ``normalized.csv`` if written, else computed in memory."""
    import pandas as pd

    run_dir = Path(run_dir)
    path = run_dir / FILE_NAME
    if path.is_file():
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    return normalize(results.load_samples(run_dir))
