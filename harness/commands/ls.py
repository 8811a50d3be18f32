"""``cvbench ls``: every run under the results directory, newest first."""

from __future__ import annotations

import argparse

from harness.commands.base import (
    EXIT_OK,
    Subparsers,
    UsageError,
    results_dir,
    results_dir_option,
)

COLUMNS = ("run", "date", "status", "commit", "host", "scenarios", "backends")


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("ls", help="list runs", parents=[results_dir_option()])
    parser.set_defaults(func=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness import results

    directory = results_dir(args)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--results-dir {directory}: not a directory")
    table = Table()
    for column in COLUMNS:
        table.add_column(column)
    for run_dir, metadata in results.list_runs(directory):
        table.add_row(
            run_dir.name,
            str(metadata.get("started_at", "")),
            str(metadata.get("status", "")),
            str(metadata.get("git_commit", ""))[:12],
            str(metadata.get("host", {}).get("hostname", "")),
            ",".join(metadata.get("scenarios", [])),
            ",".join(metadata.get("backends", {})),
        )
    Console(width=200).print(table)
    return EXIT_OK
