"""The launcher process: it runs OCI runtime commands for the harness (client: ``launcher.py``).

Started by :class:`harness.backends.oci.launcher.Launcher` as a fresh interpreter, it

- lives in a private mount namespace (mounts ``rslave``); on a hybrid cgroup host it unmounts
  ``/sys/fs/cgroup/unified`` there, which is how crun 1.8 runs on such a host;
- spawns each command with ``posix_spawn``, except ``<runtime> run``: for that it forks a child
  that mounts the container's overlay in a mount namespace of its own before exec'ing the
  runtime, so the overlay is never in the host's mount table nor in anybody else's (starts stay
  flat over a ramp to thousands) and it vanishes with the container;
- is a child subreaper: a ``<runtime> run -d`` container is reparented to it and reaped by it
  (this host's PID 1 does not reap orphans);
- runs in a session of its own, so a Ctrl-C of the harness does not reach it or the containers;
- once the harness hangs up, stays only while it has children left to reap.

Protocol: JSON datagrams on a ``SOCK_SEQPACKET`` socket. A request is
``{"id": n, "op": "spawn", "argv": [...], "overlay": {"target": ..., "data": ...}}`` (overlay
optional) with the command's stdin, stdout and stderr passed as SCM_RIGHTS; its answer,
``{"id": n, "rc": exit code}``, comes when the command exits, so several run at once. A request
that fails is answered ``{"id": n, "rc": -1, "error": "..."}``. The launcher says
``{"id": -1, "rc": 0}`` once, when it serves.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
from typing import Any

from hostkit import syscalls

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


def spawn_with_overlay(argv: list[str], fds: list[int], target: str, options: str) -> int:
    """Like :func:`spawn`, in a child that first mounts an overlay (mount ``options``) on
    ``target`` in a mount namespace of its own.

    The container's mount namespace is copied from that one, so it holds one overlay, not one
    per live container, and the overlay vanishes with the container.
    """
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: it must never return into the server loop
        for target_fd, fd in enumerate(fds):
            os.dup2(fd, target_fd)
        signal.set_wakeup_fd(-1)
        for signum in RESET_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount("overlay", target, "overlay", 0, options)
        os.execve(argv[0], argv, os.environ)
    except BaseException as error:
        with contextlib.suppress(BaseException):
            os.write(2, f"cvbench oci launcher: {error}\n".encode())
    finally:
        os._exit(127)


class Server:
    """Answers spawn requests on ``sock`` and reaps every child, adopted orphans too."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock  # None once the harness hung up
        self.pending: dict[int, int] = {}  # pid of a spawned command -> its request id
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
            self.pending[self.start(request, fds)] = request["id"]
        except Exception as error:  # report it to the caller, keep serving
            self.reply({"id": request.get("id"), "rc": -1, "error": f"{error}"})

    def start(self, request: dict[str, Any], fds: list[int]) -> int:
        """Start the request's command; return its pid. ``fds`` are closed here in any case."""
        try:
            if request["op"] != "spawn":
                raise ValueError(f"unknown op {request['op']!r}")
            overlay = request.get("overlay")
            if overlay:
                return spawn_with_overlay(request["argv"], fds, overlay["target"], overlay["data"])
            return spawn(request["argv"], fds)
        finally:
            for fd in fds:
                os.close(fd)

    def reply(self, message: dict[str, Any]) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.send(json.dumps(message).encode())

    def reap(self) -> bool:
        """Reap every exited child, answering for spawned commands; False once none is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid in self.pending:
                self.reply({"id": self.pending.pop(pid), "rc": os.waitstatus_to_exitcode(status)})
