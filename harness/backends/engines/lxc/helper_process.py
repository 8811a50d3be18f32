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

Its one request is ``{"op": "start", "name": ..., "lxcpath": ...}`` (and ``"argv"``: the
init's argv, passed to ``start()`` whole, in place of ``lxc.init.cmd``) with the workload's
stdout; the answer, ``{"pid": <monitor pid>}``, comes once the monitor is forked (failures
after that show as the pipe's end of file before READY, and in the container's lxc.log).

A monitor ends as its container's init ended (:func:`end_as`): the init's exit code, or
killed by the signal that killed the init; :data:`NOT_RUN` if liblxc did not run the
container. liblxc reaps the init itself and keeps its wait status in the container's
``error_num``, which the Python binding does not expose: :func:`init_status` reads it from
the ``struct lxc_container`` behind the binding's object. As a reaper, the helper keeps the
monitor's exit code for :data:`hostkit.helper.EXIT_STATUS`, which the backend's ``exit``
readiness rule asks for.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import socket
from typing import Any, NoReturn

from hostkit import helper

MAX_MESSAGE = 1 << 16
NOT_RUN = 125  # a monitor's exit code when liblxc did not run its container (as `docker run`)


class ContainerHead(ctypes.Structure):
    """The leading fields of liblxc's ``struct lxc_container`` (lxccontainer.h, whose own
    comment makes their order part of the API: members are only appended), up to
    ``config_path``; ``error_num`` holds the init's wait status once ``start(daemonize=False)``
    returned (``do_lxcapi_start``: ``c->error_num = handler->exit_status``)."""

    _fields_ = [("name", ctypes.c_char_p), ("configfile", ctypes.c_char_p),
                ("pidfile", ctypes.c_char_p), ("slock", ctypes.c_void_p),
                ("privlock", ctypes.c_void_p), ("numthreads", ctypes.c_int),
                ("lxc_conf", ctypes.c_void_p), ("error_string", ctypes.c_char_p),
                ("error_num", ctypes.c_int), ("daemonize", ctypes.c_bool),
                ("config_path", ctypes.c_char_p)]


def container_head(container: Any) -> ContainerHead | None:
    """The ``struct lxc_container`` behind a binding's ``lxc.Container``: the binding's object
    is the Python object header and one pointer to it (python3-lxc's ``Container``). Checked
    by its name and path, which must be the object's own; None if they are not."""
    pointer = ctypes.c_void_p.from_address(id(container) + object.__basicsize__).value
    if not pointer:
        return None
    head = ContainerHead.from_address(pointer)
    if (head.name != container.name.encode()
            or head.config_path != container.get_config_path().encode()):
        return None
    return head


def init_status(container: Any) -> int | None:
    """The wait status of the container's init, once ``start(daemonize=False)`` returned;
    None if liblxc's struct is not where the binding should have it."""
    head = container_head(container)
    return None if head is None else head.error_num


def end_as(status: int | None) -> NoReturn:
    """End this process as a process with wait ``status`` ended: its exit code, or killed by
    its signal (without a core file); :data:`NOT_RUN` for None."""
    if status is not None and os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if number not in (signal.SIGKILL, signal.SIGSTOP):  # those have no handler to reset
            signal.signal(number, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {number})
        os.kill(os.getpid(), number)
    os._exit(os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status)
             else NOT_RUN)


def main(sock_fd: int) -> None:
    import lxc  # noqa: F401  (loaded once, before any fork)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    helper.serve(socket.socket(fileno=sock_fd), {"start": fork_monitor}, max_fds=1,
                 max_message=MAX_MESSAGE, reaper=True)


def run_monitor(name: str, lxcpath: str, argv: list[str] | None = None) -> int | None:
    """The worker's body: run the container in the foreground (this process is its monitor)
    until it stops, its init running ``argv`` (None: ``lxc.init.cmd``); the init's wait
    status, None if the container did not run."""
    import lxc

    container = lxc.Container(name, lxcpath)
    if not container.defined:
        return None
    command = {"cmd": tuple(argv)} if argv else {}
    if not container.start(useinit=False, daemonize=False, close_fds=True, **command):
        return None
    return init_status(container)


def fork_monitor(request: helper.Request) -> dict[str, Any]:
    """Fork the worker that becomes the container's monitor, the request's descriptor as its
    stdout; its pid."""
    message, (stdout,) = request.message, request.fds
    pid = os.fork()
    if pid:
        return {"pid": pid}
    status = None
    try:  # the worker: it must never return into the helper's loop
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(stdout, 1)
        os.dup2(null, 2)
        helper.child_setup()
        status = run_monitor(message["name"], message["lxcpath"], message.get("argv"))
    finally:
        end_as(status)
