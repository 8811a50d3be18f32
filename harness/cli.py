"""The ``cvbench`` command line: the subcommands of :mod:`harness.commands`, logging, exit codes.

Each subcommand is one module of :mod:`harness.commands` (listed in :data:`COMMANDS`); this
module only builds the parser, sets up logging (``-v`` INFO, ``-vv`` DEBUG, before or after
the subcommand) and turns bad input into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from harness.commands import (
    baseline,
    clean,
    compare,
    ctr,
    doctor,
    fleet,
    idle,
    image,
    items,
    ls,
    profile,
    report,
    run,
    thresholds,
)
from harness.commands.base import EXIT_INTERRUPTED, EXIT_USAGE, Command, UsageError
from harness.log import configure_logging

# In the order `cvbench --help` lists them.
COMMANDS: tuple[Command, ...] = (doctor, image, run, report, ls, baseline, clean, ctr, compare,
                                 thresholds, fleet, items, profile, idle)
DESCRIPTION = ("Put Linux containers and virtual machines through identical scenarios and "
               "compare what each costs.")
VERBOSE_HELP = "log more on stderr: -v INFO, -vv DEBUG (default: warnings only)"

log = logging.getLogger(__name__)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit code 2, like all bad input.

    Subparsers (``add_parser``) are of the same class, so this holds for every subcommand.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"cvbench: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cvbench", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        # A subcommand's own -v adds to cvbench's (a second destination: argparse would let
        # the subcommand's default overwrite the count given before it).
        command.register(subparsers).add_argument(
            "-v", "--verbose", action="count", default=0, dest="subcommand_verbose",
            help=VERBOSE_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cvbench`` with ``argv`` (default: the process's); return the exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose + args.subcommand_verbose)
    log.debug("cvbench %s: %s", args.command, {key: value for key, value in vars(args).items()
                                                if key != "func"})
    try:
        return int(args.func(args))
    except UsageError as error:
        log.debug("bad input", exc_info=True)
        print(f"cvbench: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cvbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
