"""One page (index.html), a Markdown summary (summary.md) and charts of one or more runs; or,
with --history, every metric of every run in commit order, the gate's regressions marked.

``cvbench report RUN... [--reference crun]`` (:mod:`harness.report`),
``cvbench report --history results/`` (:mod:`harness.report.history`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from harness.backends import registry
from harness.commands.base import (
    EXIT_OK,
    Subparsers,
    UsageError,
    results_dir,
    results_dir_option,
)
from hostkit import validate

log = logging.getLogger(__name__)


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report", parents=[results_dir_option()],
        help="a run's page (index.html), summary.md and charts; or the history of every run",
        description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=validate.RUN, help="run directories or run ids")
    parser.add_argument("--output", type=validate.PATH,
                        help="output directory (default: <first run>/report, or "
                             "<results>/history with --history)")
    parser.add_argument("--reference", metavar="BACKEND[,BACKEND]", type=registry.NAME_LIST,
                        help="also give each backend's ratio to this one (same family and "
                             "variant only; one per family, e.g. crun,libvirt)")
    parser.add_argument("--history", metavar="RESULTS_DIR", type=validate.PATH,
                        help="instead: a page of every metric across the runs in RESULTS_DIR, "
                             "in commit order, with the gate's regressions marked")
    parser.add_argument("--alpha", type=validate.ALPHA, default=None,
                        help="with --history: the gate's significance level, "
                             f"{validate.ALPHA.describe()} (default 0.01, as CI)")
    parser.add_argument("--thresholds", metavar="FILE", type=validate.PATH,
                        help="with --history: the gate's thresholds (default "
                             "RESULTS_DIR/baseline/thresholds.toml)")
    parser.set_defaults(func=handle, report_parser=parser)
    return parser


def handle(args: argparse.Namespace) -> int:
    from harness import results

    if args.history:
        return _history(args)
    if not args.runs:  # argparse cannot require "runs or --history" itself
        args.report_parser.error("the following arguments are required: runs "
                                 "(or --history RESULTS_DIR)")
    if args.alpha is not None or args.thresholds:
        args.report_parser.error("--alpha and --thresholds go with --history")
    from harness import report
    from harness.report import headline

    try:
        reference = headline.references(
            name.strip() for name in (args.reference or "").split(",") if name.strip())
    except ValueError as error:
        raise UsageError(f"--reference: {error}") from None
    try:
        run_dirs = [results.resolve_run(run, results_dir(args)) for run in args.runs]
    except results.ResultsError as error:
        raise UsageError(str(error)) from None
    log.info("report of %s", ", ".join(str(run_dir) for run_dir in run_dirs))
    output = report.write_report(run_dirs, Path(args.output) if args.output else None,
                                 reference)
    print(output)
    return EXIT_OK


def _history(args: argparse.Namespace) -> int:
    from harness import results
    from harness.gate.errors import CompareError
    from harness.report import history

    if args.runs or args.reference:
        args.report_parser.error("--history takes no runs and no --reference")
    alpha = history.DEFAULT_ALPHA if args.alpha is None else args.alpha
    directory = Path(args.history)
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    thresholds = Path(args.thresholds) if args.thresholds else None
    if thresholds is not None and not thresholds.is_file():
        raise UsageError(f"{thresholds}: no such thresholds file")
    try:
        output = history.write_history(directory, Path(args.output) if args.output else None,
                                       alpha, thresholds)
    except (results.ResultsError, CompareError) as error:
        raise UsageError(str(error)) from None
    print(output)
    return EXIT_OK
