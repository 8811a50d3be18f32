"""The LXC helper process: starts containers through liblxc's Python binding for the harness.

A container's monitor is the process that calls ``lxc.Container.start()``. Called in the
harness, every monitor would be a copy of a large, multi-threaded Python process (a fork
while another thread holds a lock can hang the child); so the backend starts this small,
single-threaded interpreter once (importing only ``lxc``), and it forks one worker per start:
the worker puts the harness's pipe on its stdout and calls ``start(daemonize=False)`` with
``lxc.console.path = none``, so it becomes the container's monitor and the container's init
inherits the pipe as its stdout (where READY appears). Several starts run at once. The helper
is the monitors' parent and reaps them at once; it runs in a session of its own (a Ctrl-C of
the harness does not reach it), and once the harness hung up it stays only while monitors
are left.

Protocol: JSON datagrams on a ``SOCK_SEQPACKET`` socket: ``{"id": n, "name": ...,
"lxcpath": ...}`` with the workload's stdout as SCM_RIGHTS asks for one start; the answer,
``{"id": n, "ok": true, "pid": <monitor pid>}``, comes once the monitor is forked (failures
after that show as the pipe's end of file before READY, and in the container's lxc.log). The
helper says ``{"id": -1, "ok": true}`` once, when it serves.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
from typing import Any

READY_ID = -1
MAX_MESSAGE = 1 << 16
PR_SET_CHILD_SUBREAPER = 36


def main(sock_fd: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    import lxc  # noqa: F401  (loaded once, before any fork)

    Helper(socket.socket(fileno=sock_fd)).serve()


def run_monitor(name: str, lxcpath: str) -> int:
    """The worker's body: run the container in the foreground (this process is its monitor)
    until it stops; 0 if it ran."""
    import lxc

    container = lxc.Container(name, lxcpath)
    if not container.defined:
        return 2
    return 0 if container.start(useinit=False, daemonize=False, close_fds=True) else 1


class Helper:
    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def serve(self) -> None:
        self.reply({"id": READY_ID, "ok": True})
        while self.sock is not None or self.reap():
            watched = [self.wake_r] + ([self.sock.fileno()] if self.sock is not None else [])
            readable, _, _ = select.select(watched, [], [])
            if self.wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
            if self.sock is not None and self.sock.fileno() in readable:
                self.receive(self.sock)
            self.reap()

    def receive(self, sock: socket.socket) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1, socket.MSG_CMSG_CLOEXEC)
        except OSError:
            message, fds = b"", []
        if not message:
            for fd in fds:
                os.close(fd)
            sock.close()
            self.sock = None
            return
        request = json.loads(message)
        try:
            pid = self.fork_monitor(request, fds[0])
            self.reply({"id": request.get("id"), "ok": True, "pid": pid})
        except Exception as error:  # answer, keep serving
            self.reply({"id": request.get("id"), "ok": False, "error": str(error)})
        finally:
            for fd in fds:
                os.close(fd)

    def fork_monitor(self, request: dict[str, Any], stdout: int) -> int:
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:  # the worker: it must never return into the helper's loop
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(stdout, 1)
            os.dup2(null, 2)
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGPIPE):
                signal.signal(signum, signal.SIG_DFL)
            code = run_monitor(request["name"], request["lxcpath"])
        finally:
            os._exit(code)

    def reply(self, message: dict[str, Any]) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.send(json.dumps(message).encode())

    def reap(self) -> bool:
        """Reap every exited monitor; False once none is left."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
