"""``cvbench fleet run INVENTORY SCENARIO`` and ``cvbench fleet clean INVENTORY``: many hosts.

``run`` runs one scenario on every host of an Ansible inventory (:mod:`harness.fleet.run`)
and prints the fleet directory; progress and each host's outcome go to stderr. Exit 0 when
every host completed, 1 when some failed (each with its error in one line), 2 when nothing
could start (bad scenario or inventory, or no host passed the checks), 130 when interrupted
(the hosts' runs are ended and cleaned first). ``clean`` leaves every host as
``cvbench clean`` would (:mod:`harness.fleet.clean`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.backends import registry
from harness.commands.base import (
    EXIT_FAILED,
    EXIT_OK,
    Subparsers,
    UsageError,
    results_dir,
    results_dir_option,
)
from hostkit import validate

REMOTE_DIR_HELP = ("the cache directory on the hosts (named cvbench-*; default: the "
                   "inventory's cvbench_fleet_dir, else /var/cache/cvbench-fleet)")
# --remote-dir: a directory the hosts' clean-up removes, so it must carry the cvbench- prefix
REMOTE_DIR = validate.Names(pattern=r"/(?:.*/)?cvbench-[^/]*/*",
                            meaning="an absolute path whose last part is named cvbench-*")


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("fleet", help="run a scenario on many hosts (Ansible)",
                                   description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="fleet_command", required=True,
                                     parser_class=type(parser))
    run = commands.add_parser("run", parents=[results_dir_option()],
                              help="run a scenario on every host of an inventory")
    run.add_argument("inventory", type=validate.PATH,
                     help="an Ansible inventory file (INI or YAML)")
    run.add_argument("scenario", type=validate.PATH, help="scenarios/<name>.toml")
    run.add_argument("--backend", type=registry.NAME_LIST,
                     help="comma-separated backends (default: the file's)")
    run.add_argument("--seed", type=validate.SEED,
                     help=f"the turn order's seed, {validate.SEED.describe()}, the same on every "
                          "host (default: the file's, else drawn at random; recorded)")
    run.add_argument("--serial", action="store_true",
                     help="one host after another (default: all at once)")
    run.add_argument("--timeout", type=validate.RUN_TIMEOUT_S, default=None, metavar="SECONDS",
                     help="stop a host's run after this long, "
                          f"{validate.RUN_TIMEOUT_S.describe()} (default 3 hours)")
    run.add_argument("--remote-dir", type=REMOTE_DIR, help=REMOTE_DIR_HELP)
    run.set_defaults(fleet_func=handle_run)
    clean = commands.add_parser("clean", help="end fleet runs on the hosts and cvbench clean")
    clean.add_argument("inventory", type=validate.PATH,
                       help="an Ansible inventory file (INI or YAML)")
    clean.add_argument("--purge", action="store_true",
                       help="also remove the cache directory (repository copy, virtualenv)")
    clean.add_argument("--remote-dir", type=REMOTE_DIR, help=REMOTE_DIR_HELP)
    clean.set_defaults(fleet_func=handle_clean)
    parser.set_defaults(func=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    result: int = args.fleet_func(args)
    return result


def handle_run(args: argparse.Namespace) -> int:
    from harness.fleet import engine
    from harness.fleet.run import DEFAULT_TIMEOUT_S, FleetUsageError, Options, run_fleet

    options = Options(inventory=Path(args.inventory), scenario=Path(args.scenario),
                      results_dir=results_dir(args), backends=args.backend, seed=args.seed,
                      serial=args.serial, timeout_s=args.timeout or DEFAULT_TIMEOUT_S,
                      remote_dir=args.remote_dir)
    try:
        outcome = run_fleet(options, out=sys.stderr)
    except (FleetUsageError, engine.EngineError) as error:
        raise UsageError(str(error)) from None
    if outcome.fleet_dir is not None:
        print(outcome.fleet_dir)
    return outcome.exit_code


def handle_clean(args: argparse.Namespace) -> int:
    from harness.fleet import engine
    from harness.fleet.clean import clean_fleet

    try:
        found = clean_fleet(Path(args.inventory), purge=args.purge, remote_dir=args.remote_dir)
    except engine.EngineError as error:
        raise UsageError(str(error)) from None
    for host, problem in found.items():
        if problem:
            print(f"cvbench: fleet clean: host {host}: {problem}", file=sys.stderr)
    return EXIT_FAILED if any(found.values()) else EXIT_OK
