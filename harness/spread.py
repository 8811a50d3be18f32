"""Run-to-run spread of repeated runs, and the CI thresholds that would not flake on it.

A threshold must sit above the change an unchanged metric shows between two runs of the same
code on one machine: the gate compares such a pair (the candidate and the baseline's code, run
one after the other) and fails a metric only when it worsened beyond its threshold in two
pairs (:mod:`harness.gate.confirm`). So for each ``backend.variant.metric`` (the metric as
compared: its ratio to the floor is a key of its own) the spread is the standard deviation of
a pair's change, estimated from each run's median: the median absolute deviation of their
logarithms, scaled to a standard deviation (×1.4826) and to a difference of two runs (×√2).
The median absolute deviation ignores a disturbed run among them (one whose every start,
the floor's included, is much slower than the runs either side of it: docs/gate.md), where the
largest change, or any high quantile of the changes between every two runs, is set by it. The
suggested threshold is :data:`SIGMAS` spreads, rounded up to a whole percent, never below
:data:`FLOOR`, and for a metric judged by rank never below the smallest change its test can see
in the runs' own samples (less :data:`MARGIN`), so the stated regression size is one the gate
can find. Every gated metric of the runs gets its own key, so the file names exactly the
baseline's metrics (tests/unit/harness/test_gate.py checks it).

Between runs of different machine kinds (CPU models) the ``[across_kinds]`` thresholds hold
for a baseline recorded on another kind: there the largest significant worsening of a ratio
between two runs of different kinds is kept, times :data:`SAFETY_FACTOR`, and never below the
same-kind threshold.
"""

from __future__ import annotations

import functools
import logging
import math
from itertools import permutations
from pathlib import Path
from typing import TYPE_CHECKING

from harness import baseline, normalize
from harness.backends import registry
from harness.gate.compare import compare_runs, load_run
from harness.gate.stats import KEY, Row, mann_whitney_p, rated_samples
from harness.gate.thresholds import Thresholds
from harness.gate.verdicts import (
    HIGHER_IS_BETTER,
    RANK,
    REGRESSION,
    direction,
    rule,
    worse_by,
    worsened,
)

SIGMAS = 3.0  # a threshold in spreads: an unchanged metric passes it 99.87% of the time
SAFETY_FACTOR = 2.0  # across machine kinds: times the largest worsening seen
FLOOR = 0.05
MAD_TO_SIGMA = 1.4826  # the median absolute deviation of a normal sample, in its sigmas
# Across kinds, the spread is this quantile of the worsenings between every ordered pair of
# runs of different kinds (0 where a pair showed none its rule counts), not their maximum.
QUANTILE = 0.9
MIN_RUNS = 3

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)


def threshold_key(row: Row) -> str:
    """The thresholds file's key of a compared row: ``backend.variant.metric`` (the metric as
    compared: a ratio to the floor is a key of its own)."""
    return key_of(row.backend, row.variant, row.metric)


def key_of(backend: str, variant: str, metric: str) -> str:
    """``backend.variant.metric``, or ``backend.metric`` without a variant."""
    return ".".join(part for part in (backend, variant, metric) if part)


def pair_spreads(run_dirs: list[Path]) -> dict[str, float]:
    """``backend.variant.metric`` → the standard deviation of the change of its median between
    two runs of the same code on one machine kind (module docstring; the largest over the
    kinds given, and never below what sampling alone gives: :func:`sampling_pair_spreads`),
    for every gated metric with a positive median in two runs of a kind."""
    by_kind: dict[str, list[Path]] = {}
    for run in run_dirs:
        by_kind.setdefault(baseline.kind_of(run), []).append(run)
    spreads: dict[str, float] = {}
    for runs in by_kind.values():
        sampling = sampling_pair_spreads(runs)
        for name, spread in _one_kind_spreads(runs).items():
            spreads[name] = max(spread, sampling.get(name, 0.0), spreads.get(name, 0.0))
    return spreads


@functools.cache
def _rated_frames(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's rated samples in ratios to the floors and in absolute figures, read once:
    :func:`suggest` needs every run for the spreads and again for the smallest detectable
    changes."""
    return (rated_samples(load_run(run, normalized=True)),
            rated_samples(load_run(run, normalized=False)))


def _one_kind_spreads(run_dirs: list[Path]) -> dict[str, float]:
    logs: dict[str, list[float]] = {}
    for run in run_dirs:
        seen: set[str] = set()
        for frame in _rated_frames(run):
            medians = frame.groupby(list(KEY), sort=False).value.median()
            for (_, _, backend, variant, metric), median in medians.items():
                name = key_of(backend, variant, metric)
                if name in seen or not median > 0:
                    continue
                seen.add(name)
                worse = -1.0 if direction(metric) == HIGHER_IS_BETTER else 1.0
                logs.setdefault(name, []).append(worse * math.log(median))
    return {name: robust_pair_sigma(values) for name, values in logs.items()
            if len(values) >= 2}


BOOTSTRAP_DRAWS = 4000
BOOTSTRAP_SEED = 0  # the same runs always give the same file


def sampling_pair_spreads(run_dirs: list[Path]) -> dict[str, float]:
    """``backend.variant.metric`` → the standard deviation of a pair's change that the
    sampling of its median alone causes, as a relative change.

    The median absolute deviation of a few runs' medians can be near zero where the medians
    of a handful of samples happen to agree: a stop time of a VM is a few milliseconds with
    a heavy tail of slow ones, and five samples give the same median in most runs, but not in
    all. The median's sampling spread sees that tail. Each run's log samples are centred on
    their own median (a run that is wholly slower adds nothing here), pooled over the runs,
    and the median of as many samples as a run has is drawn :data:`BOOTSTRAP_DRAWS` times:
    its standard deviation, times √2 for two runs. A ratio to the floor adds its floor's
    (the floor's median divides every sample of the run)."""
    import numpy as np

    logs: dict[str, list[np.ndarray]] = {}
    for run in run_dirs:
        for frame in _rated_frames(run):
            for (_, _, backend, variant, metric), group in frame.groupby(list(KEY), sort=False):
                values = group.value.to_numpy(dtype=float)
                values = values[values > 0]
                if len(values):
                    logs.setdefault(key_of(backend, variant, metric), []).append(
                        np.log(values))
    sigmas = {name: median_sampling_sigma(runs) for name, runs in logs.items()}
    spreads: dict[str, float] = {}
    for name, sigma in sigmas.items():
        floor = _floor_key(name, sigmas)
        if floor is not None:
            sigma = math.hypot(sigma, sigmas[floor])
        spreads[name] = math.expm1(sigma * math.sqrt(2))
    return spreads


def median_sampling_sigma(log_samples: list[np.ndarray]) -> float:
    """The standard deviation of the median of ``n`` samples (``n``: the runs' median count)
    drawn from the runs' samples pooled, each run centred on its own median."""
    import numpy as np

    pooled = np.concatenate([values - np.median(values) for values in log_samples])
    count = int(np.median([len(values) for values in log_samples]))
    if len(pooled) < 2 or count < 1:
        return 0.0
    draws = np.random.default_rng(BOOTSTRAP_SEED).choice(pooled, (BOOTSTRAP_DRAWS, count))
    return float(np.std(np.median(draws, axis=1)))


def _floor_key(name: str, known: dict[str, float]) -> str | None:
    """The floor's own key of a ratio key (``ours.warm.start_to_ready_s_vs_process`` →
    ``process.warm.start_to_ready_s``, or the floor's plain variant, as normalisation falls
    back to it), None for a key that is not a ratio or whose floor is not in ``known``."""
    parts = name.split(".")
    backend, metric = parts[0], parts[-1]
    variant = parts[1] if len(parts) == 3 else ""
    floor_metric = normalize.base_metric(metric)
    if floor_metric == metric:
        return None
    floor = registry.floor_of(backend)
    for candidate in (key_of(floor, variant, floor_metric), key_of(floor, "", floor_metric)):
        if candidate in known:
            return candidate
    return None


def robust_pair_sigma(log_medians: list[float]) -> float:
    """The standard deviation of the difference of two of these (log) values, from their
    median absolute deviation, as a relative change."""
    import numpy as np

    values = np.asarray(log_medians, dtype=float)
    mad = float(np.median(np.abs(values - np.median(values))))
    return math.expm1(mad * MAD_TO_SIGMA * math.sqrt(2))


def across_kind_spreads(run_dirs: list[Path], alpha: float) -> dict[str, float]:
    """``backend.variant.metric`` (ratios only) → the :data:`QUANTILE` of the worsenings
    between two runs of different machine kinds, counted where its rule finds a regression
    (significant at ``alpha`` for a metric judged by rank), 0 elsewhere. Empty when the runs
    are all of one kind."""
    thresholds = Thresholds(default=0.0, across_kinds=Thresholds(default=0.0))
    kinds = {run: baseline.kind_of(run) for run in run_dirs}
    seen: dict[str, list[float]] = {}
    for base, candidate in permutations(run_dirs, 2):
        if kinds[base] == kinds[candidate]:
            continue
        comparison = compare_runs(base, candidate, thresholds, alpha, normalized=True)
        for row in comparison.rows:
            if not row.rule:  # one side lacks it
                continue
            seen.setdefault(threshold_key(row), []).append(
                worse_by(row.metric, row.ratio) if row.verdict == REGRESSION else 0.0)
        log.info("%s → %s: %d worsening(s) counted", base.name, candidate.name,
                 len(comparison.regressions))
    return {key: quantile(values, QUANTILE) for key, values in seen.items()}


def quantile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (linear between order statistics)."""
    import numpy as np

    return float(np.quantile(values, fraction))


GATE_ALPHA = 0.01  # scripts/quick-gate.sh
MARGIN = 0.05  # a metric's stated regression size: its threshold plus this


def smallest_detectable(run_dirs: list[Path], alpha: float = GATE_ALPHA) -> dict[str, float]:
    """``backend.variant.metric`` → the smallest worsening (whole percent) that its rank
    test finds significant at ``alpha`` in every run's own samples (the run against itself
    made that much worse), for metrics judged by rank: a threshold below it less
    :data:`MARGIN` would promise a regression size the test cannot see."""
    found: dict[str, float] = {}
    for run in run_dirs:
        for frame in _rated_frames(run):
            for key, group in frame.groupby(list(KEY), sort=False):
                _, _, backend, variant, metric = key
                values = group.value.to_numpy(dtype=float)
                if rule(len(values), len(values)) != RANK or not values.any():
                    continue
                for percent in range(1, 1001):
                    if mann_whitney_p(values, worsened(values, metric, percent / 100)) < alpha:
                        break
                name = key_of(backend, variant, metric)
                found[name] = max(found.get(name, 0.0), percent / 100)
    return found


def suggested_threshold(spread: float, floor: float = FLOOR, factor: float = SIGMAS) -> float:
    """``spread`` times ``factor``, rounded up to a whole percent, at least ``floor``."""
    return max(floor, math.ceil(round(spread * factor * 100, 6)) / 100)


def thresholds_toml(spreads: dict[str, float], run_names: list[str], alpha: float,
                    across: dict[str, float] | None = None,
                    carried: Thresholds | None = None, carried_from: str = "",
                    detectable: dict[str, float] | None = None) -> str:
    """The thresholds file (``[metrics]`` and, given ``across`` spreads or ``carried``
    thresholds across kinds from an earlier file, ``[across_kinds]``)."""
    lines = [
        "# CI thresholds for `cvbench compare` (relative worsening of a median), keyed by",
        "# backend.variant.metric; each holds for the metric and its ratio to the floor.",
        f"# Made by `cvbench thresholds` from {len(run_names)} quick-suite runs:",
        *(f"#   {name}" for name in run_names),
        "# Each is the spread of a metric between two runs (the standard deviation of the",
        "# change of its median, from the median absolute deviation of the runs' medians,",
        "# and at least what the sampling of a run's median gives, bootstrapped from the",
        f"# runs' samples) times {SIGMAS:g}, rounded up to a whole percent, at least {FLOOR:.0%};",
        "# for a metric judged by rank, at least the smallest worsening its test finds",
        f"# significant at alpha {GATE_ALPHA} in the runs' own samples, less {MARGIN:.0%}.",
        f"default = {FLOOR}",
        "",
        "[metrics]",
    ]
    detectable = detectable or {}
    same = {key: max(suggested_threshold(spread), round(detectable.get(key, 0.0) - MARGIN, 2))
            for key, spread in spreads.items()}
    for key, spread in sorted(spreads.items()):
        seen = (f", its test sees {detectable[key]:.0%}" if detectable.get(key, 0) - MARGIN
                > suggested_threshold(spread) else "")
        lines.append(f'"{key}" = {same[key]:.2f}  # spread {spread:.1%}{seen}')
    if across:
        lines += [
            "",
            "# Against a baseline of another machine kind (CPU model): the 90th percentile of",
            f"# the significant (p < {alpha}) worsenings between runs of different kinds, times",
            f"# {SAFETY_FACTOR:g}, and never below the same-kind threshold.",
            "[across_kinds]",
            f"default = {FLOOR}",
            "",
            "[across_kinds.metrics]",
        ]
        for key, spread in sorted(across.items()):
            threshold = suggested_threshold(spread, same.get(key, FLOOR), SAFETY_FACTOR)
            lines.append(f'"{key}" = {threshold:.2f}  # across kinds {spread:.1%}')
    elif carried is not None:
        lines += [
            "",
            "# Against a baseline of another machine kind (CPU model): no runs of another kind",
            f"# were given, so these are carried over from {carried_from}, each at least",
            "# the same-kind threshold of its metric.",
            "[across_kinds]",
            f"default = {carried.default}",
            "",
            "[across_kinds.metrics]",
        ]
        for key, value in sorted(carried.metrics.items()):
            floor = max((threshold for other, threshold in same.items()
                         if other.split(".")[0] == key.split(".")[0]
                         and other.split(".")[-1] == key.split(".")[-1]), default=0.0)
            lines.append(f'"{key}" = {max(value, floor):.2f}')
    return "\n".join(lines) + "\n"


def suggest(run_dirs: list[Path], alpha: float, across_from: Path | None = None) -> str:
    """The thresholds file that ``run_dirs`` (repeated runs of one code) call for; with runs of
    one machine kind only, the ``[across_kinds]`` table of ``across_from`` carried over."""
    across = across_kind_spreads(run_dirs, alpha)
    carried = None
    if not across and across_from is not None:
        carried = Thresholds.load(across_from).across_kinds
    return thresholds_toml(pair_spreads(run_dirs),
                           [f"{run.name} ({baseline.kind_of(run)})" for run in run_dirs],
                           alpha, across or None, carried, str(across_from or ""),
                           smallest_detectable(run_dirs))
