"""The ``process`` backend: fork/exec the image's ``/init`` on the host, with no isolation.

It is the containers' floor: the same workload and readiness signal, minus namespaces,
filesystems and limits. Warm, a shell is spawned ahead and waits on a pipe; the clock starts
when it is released to exec the workload.

A spec's ``command`` runs instead of ``/init``: its first word is looked up in the image
(``/bin/sh``, or ``sh`` under ``/bin``: the image's busybox, which picks its applet by that
name). Readiness rules (:mod:`harness.backends.ready_rule`): ``line``; ``exit`` (the workload
is this process's child: its status from ``waitpid``); ``tcp`` on the host's loopback
address, the process having no network namespace of its own (its ports are the host's, so
two instances cannot listen on one port at once).

An imported image (:mod:`harness.backends.launch`) runs its entrypoint and cmd, looked up in
the image the same way; with no filesystem of its own, the process sees the image under its
rootfs: its working directory is the image's workdir under the rootfs, ``PATH`` the image's
directories under the rootfs; its user is set in the child (setgroups to none, setgid,
setuid) before exec. Such a process runs the host's loader and libraries: only static
programs (busybox) run as they would in the image.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import metrics
from harness.backends import launch as launches
from harness.backends.base import (
    WARM,
    BackendError,
    Instance,
    InstanceSpec,
    MemorySample,
    Method,
)
from harness.backends.chores import Chores
from harness.backends.readiness import close_ready, reaped_exit_code, wait_then_close
from harness.backends.ready_rule import EXIT, LINE, TCP
from hostkit.paths import images_dir, state_dir
from hostkit.procs import wait_exit
from imagestore.image import Image

GRACE_S = 2.0


def pid_dir() -> Path:
    return state_dir() / "process"


# Warm: the waiting shell reads one line, then becomes the workload ($0 the init, $1 busybox).
RELEASE_SCRIPT = 'read -r _; exec "$1" sh "$0" </dev/null'
# Warm with a spec's command: the same wait, then the command ("$@": its program, arguments).
COMMAND_RELEASE_SCRIPT = 'read -r _; exec "$@" </dev/null'
LOOPBACK = "127.0.0.1"  # where a tcp rule connects: the process shares the host's network


@dataclass
class ProcessHandle:
    pid: int
    ready_fd: int | None
    pid_file: Path
    release_fd: int | None = None  # warm: written to let the workload exec
    popen: Any = None  # an imported image's workload: its Popen, kept so it is never reaped
    # behind our back (we reap it through its pid)
    exited: bool = False  # reaped by wait_ready (rule exit): nothing left to stop


def _wait_gone(pid: int, timeout: float) -> bool:
    """Reap our child ``pid``; True if it exited within ``timeout`` (through a pidfd)."""
    if not wait_exit(pid, timeout):
        return False
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    return True


class ProcessBackend(Chores):
    """Plain fork/exec of the workload: no namespaces, no cgroups, no filesystem."""

    name = "process"
    ready_kinds = (LINE, EXIT, TCP)
    launch_fields = launches.FIELDS  # under the rootfs: see the module's docstring

    def __init__(self) -> None:
        super().__init__()
        self.image: Image | None = None

    def prepare(self, image: Image) -> None:
        self.image = image
        pid_dir().mkdir(parents=True, exist_ok=True)

    def _launch(self, spec: InstanceSpec, variant: str) -> Instance:
        rootfs = spec.image.rootfs
        program = _program(spec)
        command = _command(spec)
        if variant != WARM:
            if program is not None:
                return self._spawn(spec, [str(program), *command[1:]], stdin=None,
                                   executable=program)
            return self._spawn(spec, ["sh", str(rootfs / "init")], stdin=None)
        release_r, release_w = os.pipe2(os.O_CLOEXEC)
        argv = (["sh", "-c", COMMAND_RELEASE_SCRIPT, "sh", str(program), *command[1:]]
                if program is not None else
                ["sh", "-c", RELEASE_SCRIPT, str(rootfs / "init"),
                 str(rootfs / "bin" / "busybox")])
        try:
            instance = self._spawn(spec, argv, stdin=release_r)
        except BaseException:
            os.close(release_w)
            raise
        finally:
            os.close(release_r)
        instance.handle.release_fd = release_w
        return instance

    def resume(self, instance: Instance) -> None:
        handle: ProcessHandle = instance.handle
        if handle.release_fd is not None:
            os.write(handle.release_fd, b"go\n")
            os.close(handle.release_fd)
            handle.release_fd = None

    def _spawn(self, spec: InstanceSpec, argv: list[str], stdin: int | None,
               executable: Path | None = None) -> Instance:
        rootfs = spec.image.rootfs
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        if spec.launch is not None:
            try:
                popen = _popen(spec, argv, stdin, str(executable or rootfs / "bin" / "busybox"),
                               write_fd)
            finally:
                os.close(write_fd)
            pid_file = pid_dir() / f"{spec.name}.pid"
            pid_file.write_text(f"{popen.pid}\n")
            return Instance(spec.name, self.name,
                            ProcessHandle(popen.pid, read_fd, pid_file, popen=popen), [popen.pid])
        stdin_action = ((os.POSIX_SPAWN_DUP2, stdin, 0) if stdin is not None
                        else (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0))
        try:
            pid = os.posix_spawn(
                str(executable or rootfs / "bin" / "busybox"),
                argv,
                {"PATH": str(rootfs / "bin"), "HOME": "/",
                 **dict(item.split("=", 1) for item in spec.env if "=" in item)},
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, write_fd, 1),
                    stdin_action,
                    (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
                ],
                setsid=True,
            )
        finally:
            os.close(write_fd)
        pid_file = pid_dir() / f"{spec.name}.pid"
        pid_file.write_text(f"{pid}\n")
        return Instance(spec.name, self.name, ProcessHandle(pid, read_fd, pid_file), [pid])

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        handle: ProcessHandle = instance.handle
        wait_then_close(handle, timeout, instance.name, instance.ready,
                        exit_code=lambda waited: reaped_exit_code(handle, waited),
                        address=LOOPBACK, pid=handle.pid)

    def stop(self, instance: Instance) -> None:
        """SIGTERM to the workload's process group, SIGKILL after the grace time; an instance
        whose workload ran to completion (rule ``exit``) has only leftovers of its group to
        kill."""
        handle: ProcessHandle = instance.handle
        close_ready(handle)
        if handle.release_fd is not None:
            os.close(handle.release_fd)
            handle.release_fd = None
        if handle.exited:
            _signal_group(handle.pid, signal.SIGKILL)  # what it left running in its group
            return
        _signal_group(handle.pid, signal.SIGTERM)
        if not _wait_gone(handle.pid, GRACE_S):
            _signal_group(handle.pid, signal.SIGKILL)
            _wait_gone(handle.pid, GRACE_S)
        _signal_group(handle.pid, signal.SIGKILL)  # whatever the workload left in its group

    def _remove(self, instance: Instance) -> None:
        instance.handle.pid_file.unlink(missing_ok=True)

    def memory(self, instance: Instance) -> MemorySample:
        return metrics.process_memory(instance.pids)

    def describe(self) -> dict[str, Any]:
        method = Method(
            cold=("nothing", "posix_spawn of busybox sh /init in a new session"),
            warm=("posix_spawn of a shell that waits on a pipe",
                  "a line on the pipe; the shell execs busybox sh /init"),
            stop="SIGTERM to the process group; until the workload exited (pidfd) and was "
                 "reaped",
            remove="its pid file",
        )
        return {"isolation": "none", "launcher": "posix_spawn", "method": method.as_dict()}


def _command(spec: InstanceSpec) -> tuple[str, ...]:
    """What ``spec`` runs instead of the image's /init: an imported image's entrypoint and
    cmd (:func:`harness.backends.launch.argv`), else ``spec.command`` (empty: /init)."""
    return launches.argv(spec) if spec.launch is not None else spec.command


def _popen(spec: InstanceSpec, argv: list[str], stdin: int | None, executable: str,
           stdout: int) -> subprocess.Popen[bytes]:
    """Start an imported image's workload: in its workdir under the rootfs, as its user (no
    supplementary groups), with the image's env (``PATH`` under the rootfs), in a new
    session; stdout on ``stdout``, stderr and (unless given) stdin on /dev/null."""
    assert spec.launch is not None
    rootfs = spec.image.rootfs
    env = dict(item.split("=", 1) for item in launches.environment(
        spec, (f"PATH={rootfs / 'bin'}", "HOME=/")) if "=" in item)
    if spec.launch.env and any(item.startswith("PATH=") for item in spec.launch.env):
        env["PATH"] = ":".join(str(rootfs / entry.lstrip("/"))
                               for entry in env["PATH"].split(":") if entry)
    user: dict[str, Any] = {}
    if spec.launch.uid or spec.launch.gid:
        user = {"user": spec.launch.uid, "group": spec.launch.gid, "extra_groups": []}
    try:
        return subprocess.Popen(
            argv, executable=executable, env=env, cwd=rootfs / spec.launch.workdir.lstrip("/"),
            stdin=subprocess.DEVNULL if stdin is None else stdin, stdout=stdout,
            stderr=subprocess.DEVNULL, start_new_session=True, **user)
    except OSError as error:
        raise BackendError(f"{spec.name}: {error.strerror or error}") from None


def _program(spec: InstanceSpec) -> Path | None:
    """The image's file a spec's command runs (None: no command, the image's /init); a name
    without a slash is looked up in the image's /bin."""
    command = _command(spec)
    if not command:
        return None
    first = command[0]
    program = spec.image.rootfs / (first.lstrip("/") if "/" in first else f"bin/{first}")
    if not os.access(program, os.X_OK):
        raise BackendError(f"{spec.name}: command {first!r} is no program of the image")
    return program


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def sweep() -> list[str]:
    """Kill workloads left by a harness that died.

    Their pid files survive under the state dir; a workload spawned just before the harness
    was killed may have none yet, so every session leader running an ``/init`` of this state
    dir's images is found in /proc as well.
    """
    removed = []
    directory = pid_dir()
    recorded: dict[int, str] = {}
    for pid_file in directory.glob("cvbench-*.pid") if directory.is_dir() else ():
        try:
            recorded[int(pid_file.read_text())] = pid_file.stem
        except (OSError, ValueError):
            pass
        pid_file.unlink(missing_ok=True)
    for pid in _workloads_of_this_state_dir():
        _signal_group(pid, signal.SIGKILL)
        removed.append(f"process {recorded.get(pid, 'without pid file')} (pid {pid})")
    return removed


def _workloads_of_this_state_dir() -> list[int]:
    """Session leaders running ``sh <state dir>/images/<digest>/rootfs/init``."""
    prefix = str(images_dir()).encode() + b"/"
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            if os.getsid(pid) == pid and any(arg.startswith(prefix) and
                                             arg.endswith(b"/rootfs/init") for arg in argv):
                found.append(pid)
        except OSError:
            continue
    return found


__all__ = ["ProcessBackend", "sweep"]
