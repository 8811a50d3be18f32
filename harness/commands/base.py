"""What every subcommand shares: exit codes, :class:`UsageError`, the ``--results-dir`` option.

Imports nothing of the project, so every module may import it without making a cycle.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Protocol

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and found a problem (a regression, a missing dependency)
EXIT_USAGE = 2  # bad input: nothing was done
EXIT_INCOMPLETE = 3  # `cvbench run`: the run finished, but a measurement failed or is missing
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM

Subparsers = argparse._SubParsersAction


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


class Command(Protocol):
    """A subcommand module (see :mod:`harness.commands`)."""

    def register(self, subparsers: Subparsers) -> argparse.ArgumentParser: ...


def results_dir_option() -> argparse.ArgumentParser:
    """A parent parser with ``--results-dir`` (``parents=[results_dir_option()]``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--results-dir", default="results", help="where runs are stored")
    return parent


def results_dir(args: argparse.Namespace) -> Path:
    return Path(args.results_dir)
