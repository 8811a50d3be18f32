"""Run-to-run spread of repeated runs, and the CI thresholds that would not flake on it.

Every ordered pair of the given runs is compared (normalised metrics, no threshold), and for
each ``backend.metric`` the largest *significant* worsening seen between two runs of the same
code on the same machine is kept. A threshold must sit above that: the suggestion is that
spread times a safety factor, rounded up to 5%, and never below the default.
"""

from __future__ import annotations

import math
from itertools import permutations
from pathlib import Path

from harness import compare

SAFETY_FACTOR = 2.0
FLOOR = 0.25


def worst_significant_changes(run_dirs: list[Path], alpha: float) -> dict[str, float]:
    """``backend.metric`` → largest significant relative worsening between any two runs."""
    no_threshold = compare.Thresholds(default=0.0)
    worst: dict[str, float] = {}
    for base, candidate in permutations(run_dirs, 2):
        comparison = compare.compare_runs(base, candidate, no_threshold, alpha, normalized=True)
        for row in comparison.rows:
            key = f"{row.backend}.{row.metric}"
            worst.setdefault(key, 0.0)
            if row.verdict == compare.REGRESSION:
                worsening = (1 / row.ratio - 1) if compare.direction(row.metric) == \
                    compare.HIGHER_IS_BETTER else (row.ratio - 1)
                worst[key] = max(worst[key], worsening)
    return worst


def suggested_threshold(spread: float) -> float:
    return max(FLOOR, math.ceil(spread * SAFETY_FACTOR * 20) / 20)


def thresholds_toml(spreads: dict[str, float], run_names: list[str], alpha: float) -> str:
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
    for key, spread in sorted(spreads.items()):
        lines.append(f'"{key}" = {suggested_threshold(spread):.2f}  # spread {spread:.1%}')
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m harness.spread", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run directories of repeated runs (>= 2)")
    parser.add_argument("--alpha", type=float, default=compare.DEFAULT_ALPHA)
    parser.add_argument("--output", help="write the thresholds TOML here (default: stdout)")
    args = parser.parse_args(argv)
    run_dirs = [Path(run) for run in args.runs]
    if len(run_dirs) < 2:
        parser.error("need at least two runs")
    text = thresholds_toml(worst_significant_changes(run_dirs, args.alpha),
                           [run.name for run in run_dirs], args.alpha)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
