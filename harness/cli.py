"""The ``cvbench`` command line. Heavy modules are imported inside the commands that need them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


def _results_dir(args: argparse.Namespace) -> Path:
    return Path(args.results_dir)


def cmd_doctor(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness import doctor
    from harness.backends import registry
    from harness.scenario import ScenarioError, parse_backends

    try:
        wanted = parse_backends(args.backend) if args.backend else registry.names()
    except ScenarioError as error:
        raise UsageError(str(error)) from None
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


def cmd_image(args: argparse.Namespace) -> int:
    from imagestore import image

    try:
        if args.action == "build":
            built = image.build()
            if not args.quiet:
                print(f"{built.name} {built.digest} {built.rootfs}")
        elif args.action == "verify":
            found = image.resolve(args.reference)
            image.verify(found)
            print(f"{found.digest} ok")
        else:
            for name, digest in sorted(image.refs().items()):
                print(f"{name}\t{digest}")
    except image.ImageError as error:
        raise UsageError(str(error)) from None
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from harness import scenario

    try:
        suite = scenario.select_backends(scenario.load(args.scenario), args.backend)
    except scenario.ScenarioError as error:
        raise UsageError(str(error)) from None
    from harness import runner
    from harness.backends.base import BackendError
    from imagestore.image import ImageError

    try:
        run_dir = runner.run_suite(suite, _results_dir(args), quiet=args.quiet)
    except (ImageError, BackendError) as error:
        raise UsageError(str(error)) from None
    except runner.RunInterrupted as error:
        print(f"cvbench: {error}", file=sys.stderr)
        return 130
    print(run_dir)
    if args.report:
        from harness import report

        report.write_report([run_dir])
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from harness import report, results

    try:
        run_dirs = [results.resolve_run(run, _results_dir(args)) for run in args.runs]
    except results.ResultsError as error:
        raise UsageError(str(error)) from None
    output = report.write_report(run_dirs, Path(args.output) if args.output else None)
    print(output)
    return EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness import results

    table = Table()
    for column in ("run", "date", "status", "commit", "host", "scenarios", "backends"):
        table.add_column(column)
    for run_dir, metadata in results.list_runs(_results_dir(args)):
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


def cmd_baseline(args: argparse.Namespace) -> int:
    from harness import baseline, results

    try:
        run_dir = results.resolve_run(args.run, _results_dir(args))
        target = baseline.set_baseline(run_dir, _results_dir(args) / "baseline")
    except results.ResultsError as error:
        raise UsageError(str(error)) from None
    print(f"{target} <- {run_dir.name}")
    return EXIT_OK


def cmd_clean(args: argparse.Namespace) -> int:
    from harness import clean, runlock

    try:
        lines = clean.clean_all(force=args.force)
    except runlock.RunInProgress as error:
        print(f"cvbench: {error}", file=sys.stderr)
        return EXIT_FAILED
    for line in lines:
        print(line)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cvbench", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--results-dir", default="results", help="where runs are stored")
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help="what the host offers and what backends lack")
    doctor.add_argument("--backend", help="only check what these backends need (a,b,...)")
    doctor.add_argument("--probe", action="store_true",
                        help="also time two libvirt domain creates (a few seconds)")
    doctor.set_defaults(func=cmd_doctor)

    image = sub.add_parser("image", help="build, verify or list workload images")
    image.add_argument("action", choices=("build", "verify", "ls"))
    image.add_argument("reference", nargs="?", default="default", help="name or digest")
    image.add_argument("--quiet", action="store_true")
    image.set_defaults(func=cmd_image)

    run = sub.add_parser("run", help="run a scenario file", parents=[common])
    run.add_argument("scenario", help="scenarios/<name>.toml")
    run.add_argument("--backend", help="comma-separated backends (default: the file's)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--report", action="store_true", help="write the report afterwards")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser(
        "report", help="charts and summary of one or more runs", parents=[common]
    )
    report.add_argument("runs", nargs="+", help="run directories or run ids")
    report.add_argument("--output", help="output directory (default: <first run>/report)")
    report.set_defaults(func=cmd_report)

    ls = sub.add_parser("ls", help="list runs", parents=[common])
    ls.set_defaults(func=cmd_ls)

    baseline = sub.add_parser("baseline", help="make a complete run the CI baseline",
                              parents=[common])
    baseline.add_argument("run", help="run directory or run id")
    baseline.set_defaults(func=cmd_baseline)

    clean = sub.add_parser("clean", help="remove every cvbench leftover from the host")
    clean.add_argument("--force", action="store_true",
                       help="clean even while a run holds the state directory")
    clean.set_defaults(func=cmd_clean)

    from harness import compare
    from runtime import cli as runtime_cli

    runtime_cli.register(sub)  # cvbench ctr run|ls|stop|rm
    compare.register(sub, common)  # cvbench compare BASE CANDIDATE
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as error:
        print(f"cvbench: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cvbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
