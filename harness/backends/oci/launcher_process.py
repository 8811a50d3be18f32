"""The launcher process: it runs OCI runtime commands for the harness (client: ``launcher.py``).

Started by :class:`harness.backends.oci.launcher.Launcher` as a fresh interpreter, it

- lives in a private mount namespace (mounts ``rslave``); on a hybrid cgroup host it unmounts
  ``/sys/fs/cgroup/unified`` there, which is how crun 1.8 runs on such a host;
- spawns every command with ``posix_spawn``. For ``<runtime> run`` and ``create`` it first
  mounts the container's overlay on the bundle's ``rootfs`` itself, in its own namespace (a
  detached mount made as ours makes it, ``runtime.rootfs.overlay_mount``: fsopen, fsconfig,
  fsmount; then move_mount): no extra process, no extra namespace. The runtime's container
  gets a private copy of it in the mount namespace it clones; once the command has exited,
  the launcher unmounts its own (``umount2``, ``MNT_DETACH``): its mount table holds only
  the starts in flight, never one overlay per live container, and the host's never holds one
  (a runtime's copy made while other starts are in flight holds theirs too, until its
  pivot_root detaches the old root: each container keeps only its own);
- times its own work: each answer carries how long the command ran (``posix_spawn`` until
  reaped) and the overlay's mount and unmount, so the harness can tell its own share of a
  call from the runtime's;
- is a child subreaper: a ``<runtime> run -d`` container is reparented to it and reaped by it
  at once, whatever the host's PID 1 does with orphans (some never reap them, others late);
- runs in a session of its own, so a Ctrl-C of the harness does not reach it or the containers;
- once the harness hangs up, stays only while it has children left to reap.

Protocol: JSON datagrams on a ``SOCK_SEQPACKET`` socket. A request is
``{"id": n, "op": "spawn", "argv": [...], "overlay": {"target": ..., "data": ...}}`` (overlay
optional) with the command's stdin, stdout and stderr passed as SCM_RIGHTS; its answer,
``{"id": n, "rc": exit code, "command_ns": ..., "mount_ns": ..., "unmount_ns": ...}``, comes
when the command exits (and its overlay is unmounted), so several run at once. A request that
fails is answered ``{"id": n, "rc": -1, "error": "..."}``. The launcher says
``{"id": -1, "rc": 0}`` once, when it serves.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from hostkit import syscalls
from runtime.rootfs import overlay_mount_if_supported

READY_ID = -1  # the id of the launcher's unasked first message
MAX_MESSAGE = 1 << 16
UNIFIED = "/sys/fs/cgroup/unified"
RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD)  # default again in commands


def main(sock_fd: int, unmount_unified: bool) -> None:
    """The launcher process's body: serve on ``sock_fd`` until there is nothing left to do."""
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    enter_private_mount_namespace(unmount_unified)
    Server(socket.socket(fileno=sock_fd)).serve()


def enter_private_mount_namespace(unmount_unified: bool) -> None:
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
    if unmount_unified:
        syscalls.umount2(UNIFIED, syscalls.MNT_DETACH)


def spawn(argv: list[str], fds: list[int]) -> int:
    """Start ``argv`` with ``fds`` as its stdin, stdout and stderr; return its pid."""
    return os.posix_spawn(
        argv[0],
        argv,
        dict(os.environ),
        file_actions=[(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)],
        setsigdef=RESET_SIGNALS,
    )


def mount_overlay(target: str, options: str) -> None:
    """Mount an overlay (mount ``options``) on ``target`` in this process's mount namespace:
    a detached mount made as ours makes its containers'
    (``runtime.rootfs.overlay_mount_if_supported``), attached on ``target``; mount(2) on a
    kernel without the new mount API.

    Attached under the namespace's ``rslave`` mounts, it is private: the copy a runtime's
    container gets is private too, so the launcher's unmount does not reach it.
    """
    detached = overlay_mount_if_supported(options)
    if detached is None:
        syscalls.mount("overlay", target, "overlay", 0, options)
        return
    try:
        syscalls.attach_mount(detached, target)
    finally:
        os.close(detached)


def unmount(target: str) -> None:
    """Detach ``target``'s mount from this namespace (the containers hold their own copies)."""
    syscalls.umount2(target, syscalls.MNT_DETACH)


@dataclass
class Command:
    """A spawned command: its request id, the overlay it was given, the launcher's clocks."""

    request_id: int
    overlay_target: str | None = None
    spawned_ns: int = 0  # perf_counter_ns before posix_spawn
    mount_ns: int = 0


class Server:
    """Answers spawn requests on ``sock`` and reaps every child, adopted orphans too."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock  # None once the harness hung up
        self.pending: dict[int, Command] = {}  # by the pid of a spawned command
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)  # a SIGCHLD wakes the select() below
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def serve(self) -> None:
        """Run until the harness hung up and no child is left."""
        self.reply({"id": READY_ID, "rc": 0})
        while self.sock is not None or self.reap():
            watched = [self.wake_r] if self.sock is None else [self.wake_r, self.sock.fileno()]
            readable, _, _ = select.select(watched, [], [])
            if self.wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
            if self.sock is not None and self.sock.fileno() in readable:
                self.receive(self.sock)
            self.reap()

    def receive(self, sock: socket.socket) -> None:
        """Take one request; an empty read (or a broken socket) means the harness is gone."""
        try:
            message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 3, socket.MSG_CMSG_CLOEXEC)
        except OSError:
            message, fds = b"", []
        if not message:
            sock.close()
            self.sock = None
            return
        request = json.loads(message)
        try:
            pid, command = self.start(request, fds)
            self.pending[pid] = command
        except Exception as error:  # report it to the caller, keep serving
            self.reply({"id": request.get("id"), "rc": -1, "error": f"{error}"})

    def start(self, request: dict[str, Any], fds: list[int]) -> tuple[int, Command]:
        """Start the request's command (its overlay mounted first); return its pid and what
        the answer needs. ``fds`` are closed here in any case; an overlay mounted for a
        command that did not start is unmounted again."""
        command = Command(request.get("id", READY_ID))
        try:
            if request["op"] != "spawn":
                raise ValueError(f"unknown op {request['op']!r}")
            overlay = request.get("overlay")
            if overlay:
                began = time.perf_counter_ns()
                mount_overlay(overlay["target"], overlay["data"])
                command.overlay_target = overlay["target"]
                command.mount_ns = time.perf_counter_ns() - began
            command.spawned_ns = time.perf_counter_ns()
            return spawn(request["argv"], fds), command
        except BaseException:
            if command.overlay_target is not None:
                with contextlib.suppress(OSError):
                    unmount(command.overlay_target)
            raise
        finally:
            for fd in fds:
                os.close(fd)

    def reply(self, message: dict[str, Any]) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.send(json.dumps(message).encode())

    def reap(self) -> bool:
        """Reap every exited child, answering for spawned commands (their overlay unmounted
        first); False once none is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            command = self.pending.pop(pid, None)
            if command is not None:
                self.finish(command, os.waitstatus_to_exitcode(status))

    def finish(self, command: Command, rc: int) -> None:
        """Answer for an exited command, once its overlay (if any) left this namespace."""
        reaped = time.perf_counter_ns()
        answer: dict[str, Any] = {"id": command.request_id, "rc": rc,
                                  "command_ns": reaped - command.spawned_ns,
                                  "mount_ns": command.mount_ns, "unmount_ns": 0}
        if command.overlay_target is not None:
            try:
                unmount(command.overlay_target)
            except OSError as error:
                answer.update(rc=-1, error=f"unmount: {error}")
            answer["unmount_ns"] = time.perf_counter_ns() - reaped
        self.reply(answer)
