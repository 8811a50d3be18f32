"""``cvbench clean``: remove every cvbench leftover from the host (refused during a run)."""

from __future__ import annotations

import argparse
import sys

from harness.commands.base import EXIT_FAILED, EXIT_OK, Subparsers


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("clean", help="remove every cvbench leftover from the host")
    parser.add_argument("--force", action="store_true",
                        help="clean even while a run holds the state directory")
    parser.set_defaults(func=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from harness import clean, runlock

    try:
        lines = clean.clean_all(force=args.force)
    except runlock.RunInProgress as error:
        print(f"cvbench: {error}", file=sys.stderr)
        return EXIT_FAILED
    for line in lines:
        print(line)
    return EXIT_OK
