"""The LXC helper process: starts containers through liblxc's Python binding for the harness.

A container's monitor is the process that calls ``lxc.Container.start()``. Called in the
harness, every monitor would be a copy of a large, multi-threaded Python process (a fork
while another thread holds a lock can hang the child); so the backend starts this small,
single-threaded interpreter once (importing only ``lxc``), and it forks one worker per start:
the worker puts the harness's pipe on its stdout and calls ``start(daemonize=False)`` with
``lxc.console.path = none``, so it becomes the container's monitor and the container's init
inherits the pipe as its stdout (where READY appears). Several starts run at once.

It is a reaper helper process (:mod:`hostkit.helper`): the monitors' parent (and subreaper),
reaping them at once, in a session of its own (a Ctrl-C of the harness does not reach it),
and once the harness hung up it stays only while monitors are left.

Its one request is ``{"op": "start", "name": ..., "lxcpath": ..., "cmd": [...]}`` with the
workload's stdout (``cmd``: the init's argv, given to ``start()`` whole, since liblxc splits
``lxc.init.cmd`` on every blank; empty: the config's);
the answer, ``{"pid": <monitor pid>}``, comes once the monitor is forked (failures after that
show as the pipe's end of file before READY, and in the container's lxc.log).
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from hostkit import helper

MAX_MESSAGE = 1 << 16


def main(sock_fd: int) -> None:
    import lxc  # noqa: F401  (loaded once, before any fork)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    helper.serve(socket.socket(fileno=sock_fd), {"start": fork_monitor}, max_fds=1,
                 max_message=MAX_MESSAGE, reaper=True)


def run_monitor(name: str, lxcpath: str, cmd: list[str] | None = None) -> int:
    """The worker's body: run the container in the foreground (this process is its monitor)
    until it stops, its init running ``cmd`` if given; 0 if it ran."""
    import lxc

    container = lxc.Container(name, lxcpath)
    if not container.defined:
        return 2
    extra = {"cmd": tuple(cmd)} if cmd else {}
    return 0 if container.start(useinit=False, daemonize=False, close_fds=True,
                                **extra) else 1


def fork_monitor(request: helper.Request) -> dict[str, Any]:
    """Fork the worker that becomes the container's monitor, the request's descriptor as its
    stdout; its pid."""
    message, (stdout,) = request.message, request.fds
    pid = os.fork()
    if pid:
        return {"pid": pid}
    code = 1
    try:  # the worker: it must never return into the helper's loop
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(stdout, 1)
        os.dup2(null, 2)
        helper.child_setup()
        code = run_monitor(message["name"], message["lxcpath"], message.get("cmd"))
    finally:
        os._exit(code)
