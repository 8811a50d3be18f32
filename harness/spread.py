"""Run-to-run spread of repeated runs, and the CI thresholds that would not flake on it.

Every ordered pair of the given runs is compared with no threshold, in ratios to the family
floors and (between runs of the same machine kind) in absolute figures, and for each
``backend.variant.metric`` the largest worsening seen between two runs of the same code is
kept: a significant one for a metric judged by rank, any one for a metric judged by tolerance
(:func:`harness.gate.verdicts.rule`). Between runs of the same machine kind (CPU model) that
gives the ``[metrics]`` thresholds; between runs of different kinds, the ``[across_kinds]``
ones (ratios only). A threshold must sit above that: the suggestion is that spread times a
safety factor, rounded up to a whole percent, never below :data:`FLOOR` (and, across kinds,
never below the same-kind threshold). Every gated metric of the runs gets its own key, so the
file names exactly the baseline's metrics (tests/unit/test_gate_power.py checks it).
"""

from __future__ import annotations

import argparse
import logging
import math
from itertools import permutations
from pathlib import Path

from harness import baseline
from harness.gate.compare import compare_runs, load_run
from harness.gate.errors import CompareError
from harness.gate.stats import DEFAULT_ALPHA, KEY, Row, mann_whitney_p, rated_samples
from harness.gate.thresholds import Thresholds
from harness.gate.verdicts import RANK, REGRESSION, rule, worse_by, worsened
from harness.log import configure_logging
from harness.results import ResultsError
from hostkit import validate

SAFETY_FACTOR = 2.0
FLOOR = 0.05
# The spread is this quantile of the worsenings between every ordered pair of runs (0 where a
# pair showed none its rule counts), not their maximum: one disturbed run among a dozen (seen:
# a reference run whose every start, the floor's included, was 25-40% slower than the runs
# either side of it) must not set the threshold. The gate itself rides over such a run by
# asking for the regression in two pairs.
QUANTILE = 0.9

log = logging.getLogger(__name__)


def threshold_key(row: Row) -> str:
    """The thresholds file's key of a compared row: ``backend.variant.metric`` (the metric as
    compared: a ratio to the floor is a key of its own)."""
    return key_of(row.backend, row.variant, row.metric)


def key_of(backend: str, variant: str, metric: str) -> str:
    """``backend.variant.metric``, or ``backend.metric`` without a variant."""
    return ".".join(part for part in (backend, variant, metric) if part)


def worst_significant_changes(run_dirs: list[Path], alpha: float,
                              across_kinds: bool = False) -> dict[str, float]:
    """``backend.variant.metric`` → largest worsening between two runs of the same machine
    kind (or, with ``across_kinds``, of different kinds: ratios only) that its rule counts."""
    no_threshold = Thresholds(default=0.0)
    thresholds = Thresholds(default=0.0, across_kinds=no_threshold)
    kinds = {run: baseline.kind_of(run) for run in run_dirs}
    seen: dict[str, list[float]] = {}
    for base, candidate in permutations(run_dirs, 2):
        if (kinds[base] != kinds[candidate]) != across_kinds:
            continue
        forms = (True,) if across_kinds else (True, False)
        for normalized in forms:
            comparison = compare_runs(base, candidate, thresholds, alpha,
                                      normalized=normalized)
            for row in comparison.rows:
                if not row.rule:  # one side lacks it
                    continue
                seen.setdefault(threshold_key(row), []).append(
                    worse_by(row.metric, row.ratio) if row.verdict == REGRESSION else 0.0)
            log.info("%s → %s (%s): %d worsening(s) counted", base.name, candidate.name,
                     "ratios" if normalized else "absolute", len(comparison.regressions))
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
        for normalized in (True, False):
            frame = rated_samples(load_run(run, normalized))
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


def suggested_threshold(spread: float, floor: float = FLOOR) -> float:
    """``spread`` times the safety factor, rounded up to a whole percent, at least ``floor``."""
    return max(floor, math.ceil(round(spread * SAFETY_FACTOR * 100, 6)) / 100)


def thresholds_toml(spreads: dict[str, float], run_names: list[str], alpha: float,
                    across: dict[str, float] | None = None,
                    carried: Thresholds | None = None, carried_from: str = "",
                    detectable: dict[str, float] | None = None) -> str:
    """The thresholds file (``[metrics]`` and, given ``across`` spreads or ``carried``
    thresholds across kinds from an earlier file, ``[across_kinds]``)."""
    lines = [
        "# CI thresholds for `cvbench compare` (relative worsening of a median), keyed by",
        "# backend.variant.metric; each holds for the metric and its ratio to the floor.",
        f"# Made by `python -m harness.spread` from {len(run_names)} quick-suite runs:",
        *(f"#   {name}" for name in run_names),
        f"# Each is the largest run-to-run worsening seen (significant at p < {alpha} for a",
        f"# metric judged by rank, any for one judged by tolerance), times {SAFETY_FACTOR},",
        f"# rounded up to a whole percent, at least {FLOOR:.0%}; for a metric judged by rank, at",
        "# least the smallest worsening its test finds significant at alpha "
        f"{GATE_ALPHA} in the",
        f"# runs' own samples, less {MARGIN:.0%}.",
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
            "# Against a baseline of another machine kind (CPU model): the largest significant",
            "# worsening seen between runs of different kinds, the same way, and never below",
            "# the same-kind threshold.",
            "[across_kinds]",
            f"default = {FLOOR}",
            "",
            "[across_kinds.metrics]",
        ]
        for key, spread in sorted(across.items()):
            threshold = suggested_threshold(spread, same.get(key, FLOOR))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.spread", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run directories of repeated runs (>= 2)")
    parser.add_argument("--alpha", type=validate.ALPHA, default=DEFAULT_ALPHA)
    parser.add_argument("--output", help="write the thresholds TOML here (default: stdout)")
    parser.add_argument("--across-from", metavar="FILE",
                        help="carry the [across_kinds] table of this thresholds file over "
                             "when the runs are all of one machine kind")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more on stderr: -v INFO, -vv DEBUG")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    run_dirs = [Path(run) for run in args.runs]
    if len(run_dirs) < 2:
        parser.error("need at least two runs")
    try:
        across = worst_significant_changes(run_dirs, args.alpha, across_kinds=True)
        carried = None
        if not across and args.across_from:
            carried = Thresholds.load(args.across_from).across_kinds
        text = thresholds_toml(worst_significant_changes(run_dirs, args.alpha),
                               [f"{run.name} ({baseline.kind_of(run)})" for run in run_dirs],
                               args.alpha, across or None, carried,
                               args.across_from or "", smallest_detectable(run_dirs))
    except (ResultsError, CompareError) as error:
        parser.error(str(error))
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
