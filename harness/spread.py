"""Run-to-run spread of repeated runs, and the CI thresholds that would not flake on it.

Every ordered pair of the given runs is compared (normalised metrics, no threshold), and for
each ``backend.metric`` the largest *significant* worsening seen between two runs of the same
code is kept: between runs of the same machine kind (CPU model) for the ``[metrics]``
thresholds, between runs of different kinds for the ``[across_kinds]`` ones. A threshold must
sit above that: the suggestion is that spread times a safety factor, rounded up to 5%, never
below the default (and, across kinds, never below the same-kind threshold).
"""

from __future__ import annotations

import argparse
import logging
import math
from itertools import permutations
from pathlib import Path

from harness import baseline
from harness.gate.compare import compare_runs
from harness.gate.errors import CompareError
from harness.gate.stats import DEFAULT_ALPHA
from harness.gate.thresholds import Thresholds
from harness.gate.verdicts import REGRESSION, worse_by
from harness.log import configure_logging
from harness.results import ResultsError

SAFETY_FACTOR = 2.0
FLOOR = 0.25

log = logging.getLogger(__name__)


def worst_significant_changes(run_dirs: list[Path], alpha: float,
                              across_kinds: bool = False) -> dict[str, float]:
    """``backend.metric`` → largest significant relative worsening between two runs of the
    same machine kind (or, with ``across_kinds``, of different kinds)."""
    no_threshold = Thresholds(default=0.0)
    thresholds = Thresholds(default=0.0, across_kinds=no_threshold)
    kinds = {run: baseline.kind_of(run) for run in run_dirs}
    worst: dict[str, float] = {}
    for base, candidate in permutations(run_dirs, 2):
        if (kinds[base] != kinds[candidate]) != across_kinds:
            continue
        comparison = compare_runs(base, candidate, thresholds, alpha, normalized=True)
        for row in comparison.rows:
            key = f"{row.backend}.{row.metric}"
            worst.setdefault(key, 0.0)
            if row.verdict == REGRESSION:
                worst[key] = max(worst[key], worse_by(row.metric, row.ratio))
        log.info("%s → %s: %d significant worsening(s)", base.name, candidate.name,
                 len(comparison.regressions))
    return worst


def suggested_threshold(spread: float, floor: float = FLOOR) -> float:
    """``spread`` times the safety factor, rounded up to 5%, at least ``floor``."""
    return max(floor, math.ceil(spread * SAFETY_FACTOR * 20) / 20)


def thresholds_toml(spreads: dict[str, float], run_names: list[str], alpha: float,
                    across: dict[str, float] | None = None) -> str:
    """The thresholds file (``[metrics]`` and, given ``across``, ``[across_kinds]``)."""
    lines = [
        "# CI thresholds for `cvbench compare --normalized` (relative worsening of a median).",
        f"# Made by `python -m harness.spread` from {len(run_names)} quick-suite runs:",
        *(f"#   {name}" for name in run_names),
        f"# Each is the largest significant (p < {alpha}) run-to-run worsening seen, times "
        f"{SAFETY_FACTOR}, rounded up to 5%, at least {FLOOR:.0%}.",
        f"default = {FLOOR}",
        "",
        "[metrics]",
    ]
    same = {key: suggested_threshold(spread) for key, spread in spreads.items()}
    for key, spread in sorted(spreads.items()):
        lines.append(f'"{key}" = {same[key]:.2f}  # spread {spread:.1%}')
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
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.spread", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run directories of repeated runs (>= 2)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    parser.add_argument("--output", help="write the thresholds TOML here (default: stdout)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more on stderr: -v INFO, -vv DEBUG")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    run_dirs = [Path(run) for run in args.runs]
    if len(run_dirs) < 2:
        parser.error("need at least two runs")
    try:
        across = worst_significant_changes(run_dirs, args.alpha, across_kinds=True)
        text = thresholds_toml(worst_significant_changes(run_dirs, args.alpha),
                               [f"{run.name} ({baseline.kind_of(run)})" for run in run_dirs],
                               args.alpha, across)
    except (ResultsError, CompareError) as error:
        parser.error(str(error))
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
