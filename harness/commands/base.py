"""What every subcommand shares: exit codes, :class:`UsageError`, the ``--results-dir`` option.

Imports nothing of the project but :mod:`hostkit.validate` (which imports nothing of ours),
so every module may import it without making a cycle. Every option's ``type=`` is one of that
module's validators, so bad input is refused while the command line is parsed, before a
command starts anything (``tests/unit/harness/test_cli.py`` holds every option to it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Protocol

from hostkit import validate

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
    parent.add_argument("--results-dir", default="results", type=validate.PATH,
                        help="where runs are stored")
    return parent


def results_dir(args: argparse.Namespace) -> Path:
    return Path(args.results_dir)
