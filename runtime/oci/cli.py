"""``cvbench-runtime``: the OCI runtime command line over runtime/ (``python -m runtime.oci.cli``).

Global options, before the command, as Docker's containerd shim and Podman's conmon pass them:
``--root DIR`` (default :data:`runtime.oci.state.DEFAULT_ROOT`), ``--log FILE`` and
``--log-format text|json`` (errors are appended there too, one line each, as runc writes
them), ``--debug`` (accepted); ``--systemd-cgroup`` (and crun's
``--cgroup-manager=systemd``) is refused: the runtime writes cgroups itself (cgroupfs).

Commands: ``create [--bundle DIR] [--pid-file FILE] ID``, ``start ID``, ``state ID``,
``kill [--all] ID [SIGNAL]``, ``delete [--force] ID``, ``run [--bundle DIR] [--pid-file FILE]
[--detach] ID`` and ``list``. Exit codes: 0 done, 1 the operation failed (no such container,
wrong state, a kernel error), 2 bad input (an option, a signal, or a ``config.json`` field
that cannot be honoured), each with one line on stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from runtime.oci import lifecycle
from runtime.oci.state import DEFAULT_ROOT, StateError, Store, check_id

PROG = "cvbench-runtime"
VERSION = "0.1.0"
OK, FAILED, BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    """Bad input on the command line; one line."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise BadInput(message)


def _container_id(text: str) -> str:
    try:
        return check_id(text)
    except StateError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog=PROG, description="An OCI runtime on cvbench's own container runtime.")
    top.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                     help=f"state directory (default {DEFAULT_ROOT})")
    top.add_argument("--log", type=Path, help="also append errors to this file")
    top.add_argument("--log-format", choices=("text", "json"), default="text")
    top.add_argument("--systemd-cgroup", action="store_true",
                     help="refused: cgroups are written directly (cgroupfs)")
    top.add_argument("--cgroup-manager", choices=("cgroupfs", "systemd", "disabled"),
                     default="cgroupfs", help="cgroupfs only (crun's option)")
    top.add_argument("--debug", action="store_true", help="accepted, no effect")
    top.add_argument("-v", "--version", action="store_true", help="print the version")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def bundle_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("-b", "--bundle", type=Path, default=Path("."),
                             help="the bundle directory (default: the current one)")
        command.add_argument("--pid-file", type=Path, help="write the init's pid there")
        command.add_argument("--console-socket", help="refused: no terminal support")
        command.add_argument("--preserve-fds", type=int, default=0,
                             help="refused unless 0: only stdin, stdout and stderr are passed")
        command.add_argument("--no-pivot", action="store_true",
                             help="accepted: the root switch never pivots (runtime.rootfs)")
        command.add_argument("--no-new-keyring", action="store_true",
                             help="accepted: the init always gets a keyring of its own")
        command.add_argument("id", type=_container_id)

    create = commands.add_parser("create", help="create a container; its init waits for start")
    bundle_options(create)
    run = commands.add_parser("run", help="create and start; wait for the exit unless -d")
    bundle_options(run)
    run.add_argument("-d", "--detach", action="store_true")
    for name, what in (("start", "let a created container run"),
                       ("state", "print the container's state as JSON")):
        commands.add_parser(name, help=what).add_argument("id", type=_container_id)
    kill = commands.add_parser("kill", help="send a signal (default SIGTERM) to the init")
    kill.add_argument("-a", "--all", action="store_true", help="to every process of it")
    kill.add_argument("id", type=_container_id)
    kill.add_argument("signal", nargs="?", default="SIGTERM")
    delete = commands.add_parser("delete", help="remove a stopped container")
    delete.add_argument("-f", "--force", action="store_true", help="kill it first if running")
    delete.add_argument("id", type=_container_id)
    commands.add_parser("list", help="the containers and their status")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    log: tuple[Path | None, str] = (None, "text")
    try:
        args = parser().parse_args(argv)
        log = (args.log, args.log_format)
        if args.version:
            from runtime.spec import OCI_VERSION

            print(f"{PROG} version {VERSION}\nspec: {OCI_VERSION}")
            return OK
        if args.systemd_cgroup or args.cgroup_manager != "cgroupfs":
            raise BadInput("--systemd-cgroup is not supported: cgroups are written directly "
                           "(cgroupfs); leave the option out")
        if args.command is None:
            raise BadInput("a command is needed: create, start, state, kill, delete, run, list")
        return _dispatch(args, Store(args.root))
    except (BadInput, ValueError) as error:  # ConfigError is a ValueError (SpecError)
        return _fail(BAD_INPUT, str(error), *log)
    except (StateError, lifecycle.LifecycleError, OSError) as error:
        return _fail(FAILED, str(error), *log)


def _dispatch(args: argparse.Namespace, store: Store) -> int:
    if args.command in ("create", "run"):
        if args.console_socket:
            raise BadInput("--console-socket: a terminal is not supported")
        if args.preserve_fds:
            raise BadInput("--preserve-fds: only stdin, stdout and stderr are passed on")
        from runtime.forkserver import ForkServer

        server = ForkServer()
        server.start_in_background()  # beside the imports and the reading of the bundle
        try:
            from runtime.oci import create  # the heavy part, loaded only where it is used

            if args.command == "create":
                create.create(store, args.id, args.bundle, server, pid_file=args.pid_file)
                return OK
            code, warnings = create.run(store, args.id, args.bundle, server,
                                        pid_file=args.pid_file, detach=args.detach)
        finally:
            server.close()
        _warn(warnings, args)
        return code
    if args.command == "start":
        _warn(lifecycle.start(store, args.id), args)
    elif args.command == "state":
        print(json.dumps(store.state(store.load(args.id)), indent=2))
    elif args.command == "kill":
        lifecycle.kill(store, args.id, lifecycle.parse_signal(args.signal), every=args.all)
    elif args.command == "delete":
        _warn(lifecycle.delete(store, args.id, force=args.force), args)
    elif args.command == "list":
        for container_id in store.ids():
            record = store.load(container_id)
            print(f"{container_id}\t{record.pid}\t{store.status(record)}\t{record.bundle}")
    return OK


def _warn(warnings: list[str], args: argparse.Namespace) -> None:
    """Report what failed without failing the command (poststart and poststop hooks)."""
    for warning in warnings:
        _report("warning", warning, args.log, args.log_format)


def _fail(code: int, message: str, log: Path | None, log_format: str) -> int:
    _report("error", message, log, log_format)
    return code


def _report(level: str, message: str, log: Path | None, log_format: str) -> None:
    """One line on stderr (``warning: `` before a warning), and in the log if there is one."""
    line = message.splitlines()[0] if message else "failed"
    print(f"{PROG}: {'warning: ' if level == 'warning' else ''}{line}", file=sys.stderr)
    if log is not None:
        now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        entry = (json.dumps({"level": level, "msg": line, "time": now})
                 if log_format == "json" else f'time="{now}" level={level} msg="{line}"')
        try:
            with open(log, "a") as handle:
                handle.write(entry + "\n")
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
