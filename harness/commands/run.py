"""``cvbench run SCENARIO``: run a scenario file on its backends; print the run directory.

Bad input (the file, ``--backend``, ``--runtime`` or the file's ``[runtimes]``: a binary
that is missing or not an OCI runtime, a ``[backend_options.X]`` key, a missing image or
backend, a host whose cgroup tree cvbench cannot use: :mod:`harness.hostkind`) is a
:class:`~harness.commands.base.UsageError` raised before anything starts. Any
other exception, a ``TypeError`` inside a backend's constructor included, is a bug and is
not disguised as bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from harness.backends.oci import runtimes
from harness.commands.base import (
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    UsageError,
    results_dir,
    results_dir_option,
)
from hostkit import validate

log = logging.getLogger(__name__)


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "run", help="run a scenario file", parents=[results_dir_option()],
        epilog=f"exit codes: {EXIT_OK} the run is complete; {EXIT_INCOMPLETE} it finished "
               "incomplete (a measurement failed: one line each on stderr, and the metadata's "
               f"failures); {EXIT_USAGE} bad input, nothing started; {EXIT_FAILED} an error "
               f"stopped it (the metadata says failed); {EXIT_INTERRUPTED} interrupted (Ctrl-C, "
               "SIGTERM), marked incomplete. The run directory is printed for 0 and 3.")
    parser.add_argument("scenario", type=validate.PATH, help="scenarios/<name>.toml")
    parser.add_argument("--backend", type=validate.Text("a comma-separated list of backends"),
                        help="comma-separated backends (default: the file's; checked once the "
                             "runtimes are declared)")
    parser.add_argument("--runtime", action="append", default=[], type=runtimes.OPTION,
                        metavar="NAME=PATH",
                        help="an OCI runtime's binary, as a container backend named NAME "
                             "(crun's bundle, profile, cgroups and clean-up); repeatable; wins "
                             "over the file's [runtimes] NAME; it runs with the file's backends "
                             "unless --backend names others")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--report", action="store_true", help="write the report afterwards")
    parser.add_argument("--seed", type=validate.SEED,
                        help=f"the turn order's seed, {validate.SEED.describe()} (default: the "
                             "file's [suite] seed, else drawn at random; always recorded in "
                             "metadata)")
    parser.set_defaults(func=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from harness import hostkind, scenario

    try:
        given = dict(runtimes.parse(text) for text in args.runtime)
        suite = scenario.select_backends(scenario.load(args.scenario, given), args.backend)
        if not args.backend:  # a runtime named on the command line runs with the file's
            suite = dataclasses.replace(suite, backends=tuple(dict.fromkeys(
                (*suite.backends, *given))))
        if args.seed is not None:
            suite = dataclasses.replace(suite, seed=args.seed)
        hostkind.check()  # a host whose cgroups cvbench cannot use: refused before any start
    except (scenario.ScenarioError, hostkind.HostKindError) as error:
        raise UsageError(str(error)) from None
    log.info("%s: backends %s", args.scenario, ", ".join(suite.backends))
    from harness import runner
    from harness.backends.base import BackendError
    from imagestore.image import ImageError

    try:
        run_dir = runner.run_suite(suite, results_dir(args), quiet=args.quiet)
    except (ImageError, BackendError) as error:
        raise UsageError(str(error)) from None
    except runner.RunInterrupted as error:
        print(f"cvbench: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(run_dir)
    if args.report:
        from harness import report

        log.info("writing the report of %s", run_dir)
        report.write_report([run_dir])
    return _exit_code(run_dir)


def _exit_code(run_dir: Path) -> int:
    """EXIT_OK for a complete run; else one line per recorded failure and EXIT_INCOMPLETE."""
    from harness import results

    metadata = results.read_metadata(run_dir)
    if metadata.get("status") == "complete":
        return EXIT_OK
    failures = results.failure_lines(metadata)
    print(f"cvbench: run {run_dir.name} is {metadata.get('status')}: {len(failures)} "
          "failure(s)", file=sys.stderr)
    for line in failures:
        print(f"cvbench: {line}", file=sys.stderr)
    return EXIT_INCOMPLETE
