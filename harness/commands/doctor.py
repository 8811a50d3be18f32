"""``cvbench doctor``: what the host offers and what the chosen backends still lack."""

from __future__ import annotations

import argparse
import logging

from harness.backends import registry
from harness.backends.oci import runtimes
from harness.commands.base import EXIT_FAILED, EXIT_OK, Subparsers, UsageError
from hostkit import validate

log = logging.getLogger(__name__)


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("doctor", help="what the host offers and what backends lack")
    parser.add_argument("--backend", type=validate.Text("a comma-separated list of backends"),
                        help="only check what these backends need (a,b,...)")
    parser.add_argument("--runtime", action="append", default=[], type=runtimes.OPTION,
                        metavar="NAME=PATH",
                        help="also check an OCI runtime's binary, as `cvbench run --runtime` "
                             "takes it (repeatable)")
    parser.add_argument("--probe", action="store_true",
                        help="also time two libvirt domain creates (a few seconds)")
    parser.set_defaults(func=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness import doctor, hostkind
    from harness.scenario import ScenarioError, parse_backends

    try:
        for text in args.runtime:
            name, path = runtimes.parse(text)
            try:
                runtimes.declare(name, path)
            except validate.Invalid as error:
                raise ScenarioError(f"--runtime: runtime {name}: {error}") from None
        wanted = parse_backends(args.backend) if args.backend else registry.names()
        hostkind.check()  # a host cvbench cannot run on: one line, before any check runs
    except (ScenarioError, hostkind.HostKindError) as error:
        raise UsageError(str(error)) from None
    log.info("checking the host for %s%s", ", ".join(wanted), " (with probes)" if args.probe
             else "")
    checks = doctor.run_checks(probe=args.probe)
    table = Table(title="cvbench doctor")
    for column in ("check", "status", "detail"):
        table.add_column(column)
    for check in checks:
        table.add_row(check.name, "[green]ok[/green]" if check.ok else "[red]missing[/red]",
                      check.detail)
    console = Console()
    console.print(table)
    missing = doctor.missing_for(checks, wanted)
    for backend, check in missing:
        console.print(f"[red]{backend}[/red] needs {check.name}: {check.fix}")
    return EXIT_FAILED if missing else EXIT_OK
