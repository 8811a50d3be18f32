"""``cvbench report RUN...``: charts and a summary of one or more runs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from harness.commands.base import (
    EXIT_OK,
    Subparsers,
    UsageError,
    results_dir,
    results_dir_option,
)

log = logging.getLogger(__name__)


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("report", help="charts and summary of one or more runs",
                                   parents=[results_dir_option()])
    parser.add_argument("runs", nargs="+", help="run directories or run ids")
    parser.add_argument("--output", help="output directory (default: <first run>/report)")
    parser.set_defaults(func=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from harness import report, results

    try:
        run_dirs = [results.resolve_run(run, results_dir(args)) for run in args.runs]
    except results.ResultsError as error:
        raise UsageError(str(error)) from None
    log.info("report of %s", ", ".join(str(run_dir) for run_dir in run_dirs))
    output = report.write_report(run_dirs, Path(args.output) if args.output else None)
    print(output)
    return EXIT_OK
