"""``cvbench thresholds RUN RUN RUN ...``: the CI thresholds that repeated runs call for.

Prints (or writes, ``--output``) a thresholds file for ``cvbench compare --thresholds`` from
three or more runs of one code (:mod:`harness.spread`: how each threshold follows from the
runs' spread). Runs of several machine kinds also give the ``[across_kinds]`` table; runs of
one kind can carry it over from an earlier file (``--across-from``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import (
    EXIT_OK,
    Subparsers,
    UsageError,
    results_dir,
    results_dir_option,
)
from harness.gate.stats import DEFAULT_ALPHA
from hostkit import validate


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "thresholds", parents=[results_dir_option()],
        help="suggest CI thresholds from repeated runs of one code",
        description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", type=validate.RUN,
                        help="run directories or run ids of repeated runs (at least 3)")
    parser.add_argument("--alpha", type=validate.ALPHA, default=DEFAULT_ALPHA,
                        help="significance level of the worsenings counted across machine "
                             f"kinds, {validate.ALPHA.describe()} (default {DEFAULT_ALPHA})")
    parser.add_argument("--across-from", metavar="FILE", type=validate.PATH,
                        help="carry this thresholds file's [across_kinds] table over when the "
                             "runs are all of one machine kind")
    parser.add_argument("--output", metavar="FILE", type=validate.PATH,
                        help="write the file here (default: standard output)")
    parser.set_defaults(func=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from harness import results, spread
    from harness.gate.errors import CompareError

    if len(args.runs) < spread.MIN_RUNS:
        raise UsageError(f"need at least {spread.MIN_RUNS} runs (a median absolute deviation "
                         "of fewer says little)")
    across_from = Path(args.across_from) if args.across_from else None
    if across_from is not None and not across_from.is_file():
        raise UsageError(f"--across-from: no such file: {across_from}")
    try:
        run_dirs = [results.resolve_run(run, results_dir(args)) for run in args.runs]
        text = spread.suggest(run_dirs, args.alpha, across_from)
    except (results.ResultsError, CompareError) as error:
        raise UsageError(str(error)) from None
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return EXIT_OK
