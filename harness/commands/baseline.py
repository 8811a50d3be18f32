"""``cvbench baseline RUN``: make a complete run the CI baseline of its machine kind."""

from __future__ import annotations

import argparse

from harness.commands.base import (
    EXIT_OK,
    Subparsers,
    UsageError,
    results_dir,
    results_dir_option,
)
from hostkit import validate


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("baseline", help="make a complete run the CI baseline",
                                   parents=[results_dir_option()])
    parser.add_argument("run", type=validate.RUN, help="run directory or run id")
    parser.set_defaults(func=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from harness import baseline, results

    try:
        run_dir = results.resolve_run(args.run, results_dir(args))
        target = baseline.set_baseline(run_dir, results_dir(args) / "baseline")
    except results.ResultsError as error:
        raise UsageError(str(error)) from None
    print(f"{target} <- {run_dir.name}")
    return EXIT_OK
