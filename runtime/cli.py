"""``cvbench ctr run|ls|stop|rm``: manual use of the runtime.

``register(subparsers)`` adds the ``ctr`` command to an argparse subparsers object; every
handler returns an exit code (0 ok, 1 operation failed, 2 bad input) and reports an error
as one line on stderr. Containers started by ``ctr run`` outlive the command.

Every option is checked by :mod:`hostkit.validate` while the command line is parsed, with
the bounds a scenario's keys have (``--memory`` as ``memory_limit_mib``, ``--timeout`` as
``timeout_s``), so bad input is refused before a container is made; ``stop`` and ``rm``
refuse a name no container has before they touch any.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import uuid

from hostkit import validate
from hostkit.paths import containers_dir
from imagestore.image import REFERENCE, ImageError, load_verified
from runtime.container import NAME, NAME_RE, ContainerError, Runtime
from runtime.spec import NETWORK_MODES, SpecError, default_spec

BAD_INPUT = 2
FAILED = 1


def existing() -> tuple[str, ...]:
    """The names of this state directory's containers (``ctr stop`` and ``rm`` take these)."""
    root = containers_dir()
    if not root.is_dir():
        return ()
    return tuple(sorted(entry.name for entry in os.scandir(root)
                        if entry.is_dir() and NAME_RE.match(entry.name)))


EXISTING_NAME = dataclasses.replace(NAME, known=existing, what="container")
NETWORK = validate.Names(NETWORK_MODES)


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    ctr: argparse.ArgumentParser = subparsers.add_parser(
        "ctr", help="run and manage containers by hand (cvbench runtime)"
    )
    commands = ctr.add_subparsers(dest="ctr_command", metavar="{run,ls,stop,rm}")
    commands.required = True

    run = commands.add_parser("run", help="start a container (detached) and wait for READY")
    run.add_argument("--name", type=NAME, help="container name (default: cvbench-<random>)")
    run.add_argument("--image", default="default", type=REFERENCE,
                     help="image name or digest (default: default)")
    run.add_argument("--memory", type=validate.MEMORY_LIMIT_MIB, metavar="MIB",
                     help=f"memory limit in MiB, {validate.MEMORY_LIMIT_MIB.describe()}")
    run.add_argument("--pids", type=validate.PIDS, metavar="N",
                     help=f"maximum number of processes, {validate.PIDS.describe()}")
    run.add_argument("--cpus", type=validate.CPUS, metavar="CPUS",
                     help=f"CPU quota, e.g. 0.5 ({validate.CPUS.describe()})")
    # choices: only for the help's {none,bridge,host}; the type refuses anything else first
    run.add_argument("--network", type=NETWORK, default="none", choices=NETWORK_MODES)
    run.add_argument("--readonly", action="store_true", help="read-only root filesystem")
    run.add_argument("--timeout", type=validate.TIMEOUT_S, default=10.0,
                     help=f"seconds to wait for READY, {validate.TIMEOUT_S.describe()}")
    run.add_argument(
        "command", nargs=argparse.REMAINDER, help="command to run instead of /init (after --)"
    )
    run.set_defaults(func=cmd_run)

    ls = commands.add_parser("ls", help="list containers")
    ls.set_defaults(func=cmd_ls)

    stop = commands.add_parser("stop", help="stop containers (SIGTERM, then SIGKILL)")
    stop.add_argument("names", nargs="+", type=EXISTING_NAME)
    stop.add_argument("--grace", type=validate.DURATION_S, default=2.0,
                      help=f"seconds before SIGKILL, {validate.DURATION_S.describe()}")
    stop.set_defaults(func=cmd_stop)

    rm = commands.add_parser("rm", help="remove stopped containers")
    rm.add_argument("names", nargs="+", type=EXISTING_NAME)
    rm.add_argument("-f", "--force", action="store_true", help="stop running ones first")
    rm.set_defaults(func=cmd_rm)
    return ctr


def _error(message: str, code: int) -> int:
    print(f"cvbench ctr: {message}", file=sys.stderr)
    return code


def cmd_run(args: argparse.Namespace) -> int:
    name = args.name or f"cvbench-{uuid.uuid4().hex[:8]}"
    command = [c for c in args.command if c != "--"] if args.command else None
    try:
        image = load_verified(args.image)
        spec = default_spec(
            image,
            name,
            memory_limit_mib=args.memory,
            pids_limit=args.pids,
            cpu_limit=args.cpus,
            network=args.network,
            args=command,
            readonly=args.readonly,
        )
    except (ImageError, SpecError) as error:
        return _error(str(error), BAD_INPUT)
    runtime = Runtime()
    try:
        try:
            container = runtime.create(spec, name)
        except ContainerError as error:
            return _error(str(error), BAD_INPUT)
        log_fd = None
        if command:  # arbitrary output goes to a log, not to a pipe that closes with us
            log_fd = os.open(container.directory / "log", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            runtime.start(container, output_fd=log_fd)
            if log_fd is None:
                runtime.wait_ready(container, args.timeout)
        except ContainerError as error:  # NotReadyError included
            runtime.destroy(container)
            return _error(str(error), FAILED)
        finally:
            if log_fd is not None:
                os.close(log_fd)
        address = f" {container.net.address}" if container.net else ""
        print(f"{container.name} {container.pid}{address}")
        return 0
    finally:
        runtime.close()


def cmd_ls(args: argparse.Namespace) -> int:
    runtime = Runtime()
    rows = [("NAME", "STATE", "PID", "NETWORK", "ADDRESS", "CGROUP")]
    for c in runtime.list():
        state = "running" if c.running else ("stopped" if c.state != "created" else "created")
        if c.exit and c.exit.oom_killed:
            state = "oom-killed"
        rows.append(
            (
                c.name,
                state,
                str(c.pid or "-"),
                c.spec.network,
                c.net.address if c.net else "-",
                c.cgroup,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    runtime = Runtime()
    code = 0
    for name in args.names:
        try:
            container = runtime.get(name)
            info = runtime.stop(container, grace=args.grace)
            container.save()
            known = info.status is not None or info.oom_killed  # else not our child to reap
            print(f"{name}: {info.describe() if known else 'stopped'}")
        except ContainerError as error:
            code = max(code, _error(str(error), BAD_INPUT))
    return code


def cmd_rm(args: argparse.Namespace) -> int:
    runtime = Runtime()
    code = 0
    for name in args.names:
        try:
            container = runtime.get(name)
            if container.running and not args.force:
                code = max(code, _error(f"{name} is running: stop it or use -f", BAD_INPUT))
                continue
            runtime.destroy(container)
            print(name)
        except ContainerError as error:
            code = max(code, _error(str(error), BAD_INPUT))
    return code
