"""Ratios against each family's in-run floor, so runs on different machines compare.

Containers are divided by the ``process`` floor, VMs by the ``qemu`` floor (the families and
floors are in :mod:`harness.backends.registry`): a host that forks, or emulates, slower or
faster moves both sides of a ratio together. Every sample of a non-floor backend is divided
by the median of its floor's samples of the same run, scenario, metric and variant (a floor
without that variant, e.g. ``process`` for a warm start, gives its plain one). The result has
the columns of ``samples.csv``; metric names get the suffix ``_vs_<floor>`` and the unit is
``ratio``.

Left out: the floors themselves, metrics the floor lacks (or whose floor median is not a
positive number), and readings of the host's state (what each kind declares a host reading,
:class:`harness.kinds.base.Metric`: ``host_*``, ``ksm_*``, ``instances_alive``): density
records them at every step as points of a curve, and dividing them by the floor's median over
its own, different, ramp means nothing. Per-step outcomes such as the density scenario's
``launch_s`` are kept.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import results
from harness.backends import registry
from harness.kinds import registry as kinds_registry
from hostkit.files import atomic_write

if TYPE_CHECKING:
    import pandas as pd

    from harness.kinds.base import Metric

UNIT = "ratio"
FILE_NAME = "normalized.csv"
_INTEGER_COLUMNS = ("guest_memory_mib", "repetition", "instance", "step", "position")

log = logging.getLogger(__name__)


def _blank(column: pd.Series) -> pd.Series:
    """True where a (CSV-loaded) dimension is empty: NaN or ''."""
    return column.isna() | (column.astype(str) == "")


def declared(samples: pd.DataFrame) -> pd.Series:
    """Each sample's :class:`harness.kinds.base.Metric`, as its kind declares its metric
    (a ``_vs_<floor>`` ratio as its metric's); None where the kind declares none."""
    import pandas as pd

    kinds = samples["kind"].astype(str) if "kind" in samples else pd.Series(
        None, index=samples.index, dtype=object)
    pairs = list(zip(kinds, samples["metric"].astype(str), strict=True))
    found = {pair: kinds_registry.metric(base_metric(pair[1]), pair[0])
             for pair in dict.fromkeys(pairs)}
    return pd.Series([found[pair] for pair in pairs], index=samples.index, dtype=object)


def is_host_reading(samples: pd.DataFrame) -> pd.Series:
    """Mask of readings of the host's state (curve points, counters), not per-instance
    outcomes: the metrics their kinds declare ``host_reading``."""
    return flag(samples, lambda metric: metric.host_reading)


def flag(samples: pd.DataFrame, test: Callable[[Metric], bool]) -> pd.Series:
    """Mask of the samples whose declared metric passes ``test`` (undeclared ones: False)."""
    import pandas as pd

    return pd.Series([metric is not None and test(metric) for metric in declared(samples)],
                     index=samples.index, dtype=bool)


_SUFFIX = re.compile(r"_vs_[a-z0-9]+$")


def suffix(floor: str) -> str:
    """The metric suffix of ratios to ``floor``: ``_vs_process``, ``_vs_qemu``."""
    return f"_vs_{floor}"


def base_metric(metric: str) -> str:
    """``start_to_ready_s_vs_process`` -> ``start_to_ready_s`` (any floor's suffix)."""
    return _SUFFIX.sub("", metric)


def normalize(samples: pd.DataFrame) -> pd.DataFrame:
    """Samples (of one run or many, e.g. ``results.load_all()``) as ratios to their floor."""
    import pandas as pd

    columns = list(results.SAMPLE_COLUMNS)
    if samples.empty:
        return pd.DataFrame(columns=columns)
    frame = samples[~is_host_reading(samples)].copy()
    frame["_variant"] = frame["variant"].where(~_blank(frame["variant"]), "")
    frame["_floor_backend"] = frame["backend"].astype(str).map(registry.floor_of)
    keys = ["run_id", "scenario", "metric", "_variant"]
    floor_rows = frame[frame.backend == frame._floor_backend]
    medians = (floor_rows.groupby(["backend", *keys], sort=False)["value"].median()
               .rename("_floor").reset_index().rename(columns={"backend": "_floor_backend"}))
    plain = medians[medians._variant == ""].drop(columns="_variant")
    members = frame[frame.backend != frame._floor_backend]
    merged = members.merge(medians, on=["_floor_backend", *keys], how="left")
    fallback = members.merge(plain, on=["_floor_backend", *keys[:-1]], how="left")
    merged["_floor"] = merged["_floor"].fillna(fallback["_floor"])
    has_floor = (merged["_floor"] > 0) & merged["_floor"].map(math.isfinite)
    if not has_floor.all():
        log.debug("left out (no positive floor median): %s", ", ".join(sorted(
            {f"{row.backend}/{row.metric}" for row in merged[~has_floor].itertuples()})))
    merged = merged[has_floor]
    merged["value"] = merged["value"] / merged["_floor"]
    merged["metric"] = merged["metric"] + merged["_floor_backend"].map(suffix)
    merged["unit"] = UNIT
    return merged[columns].reset_index(drop=True)


def plain(value: Any) -> str:
    """A dimension as samples.csv writes it: ``128`` rather than ``128.0``, '' for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def to_csv(normalized: pd.DataFrame) -> str:
    """Normalized samples as ``normalized.csv`` text (integer dimensions without ``.0``)."""
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
    normalized = normalize(results.load_samples(run_dir))
    atomic_write(path, to_csv(normalized))
    log.info("%s: %d ratio(s) to the family floors", path, len(normalized))
    return path


def load_normalized(run_dir: Path) -> pd.DataFrame:
    """The run's normalized samples: ``normalized.csv`` if written, else computed in memory."""
    import pandas as pd

    run_dir = Path(run_dir)
    path = run_dir / FILE_NAME
    if path.is_file():
        log.debug("%s: read", path)
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    log.info("%s: no %s, computing the ratios in memory", run_dir, FILE_NAME)
    return normalize(results.load_samples(run_dir))
