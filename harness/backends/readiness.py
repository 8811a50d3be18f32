"""Readiness for backends: one wait per rule (:mod:`harness.backends.ready_rule`), raising
:class:`NotReady`, that every container backend calls with what it knows of its instance.

- ``line``: :func:`hostkit.readiness.read_ready` on the workload's output pipe;
- ``exit``: the pipe read to its end of file (a workload that runs to completion closes it
  as it exits; reading also keeps a chatty one from blocking on a full pipe), then the
  process's exit awaited through the backend's own ``exit_code`` (a pidfd, then its status
  from whoever reaps it); a status other than 0 is NotReady;
- ``tcp``: connect from the host to the instance's address. Nothing outside the instance's
  network namespace signals that a socket started listening in it, so this is the one wait
  that retries: a refused connection is retried after a short backoff
  (:data:`RETRY_FIRST_S` doubling up to :data:`RETRY_MAX_S`, which bounds how late the
  wait sees a listener; an attempt unanswered for :data:`ATTEMPT_S` is retried), and
  between attempts the wait sleeps on events, not a timer alone:
  the output pipe (drained, so the workload never blocks on it) and the workload's pidfd, so
  a workload that dies ends the wait at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import time
from collections.abc import Callable

from harness.backends.base import NotReady
from harness.backends.ready_rule import EXIT, TCP, ReadyRule
from hostkit.procs import child_exit_code
from hostkit.readiness import read_ready as _read_ready
from hostkit.readiness import read_to_eof

RETRY_FIRST_S = 0.0005  # tcp: the first pause after a refused connection
RETRY_MAX_S = 0.005  # tcp: the longest pause; a listener is seen at most this late
# tcp: an attempt the instance has not answered (neither accepted nor refused) after this
# long is given up for a new one: a SYN lost while the instance's interface came up would
# otherwise wait for the kernel's first retransmission, 1 s later. On the host's own bridge
# an answer takes microseconds.
ATTEMPT_S = 0.1
# errors a connection to an instance whose listener is not up yet may get
NOT_YET = (errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ENETUNREACH)

ExitCode = Callable[[float], "int | None"]  # wait up to s for the workload's exit: its code


def read_ready(fd: int, timeout: float, name: str, marker: bytes | None = None,
               error_prefix: bytes | None = None) -> None:
    """Block until the workload printed ``marker`` (READY) on ``fd``; NotReady on timeout or
    exit."""
    if marker is None:
        _read_ready(fd, timeout, name, error=NotReady, error_prefix=error_prefix)
    else:
        _read_ready(fd, timeout, name, error=NotReady, error_prefix=error_prefix,
                    marker=marker)


def wait_rule(rule: ReadyRule, fd: int, timeout: float, name: str, *,
              exit_code: ExitCode | None = None, address: str | None = None,
              pid: int | None = None, error_prefix: bytes | None = None) -> None:
    """Block until ``rule`` holds for the instance whose output is on ``fd``: ``exit_code``
    (rule ``exit``) waits for its workload's exit and gives its exit code (negative: the
    signal; None: still running); ``address`` (rule ``tcp``) is where the host reaches it,
    ``pid`` its workload's host pid (its exit ends the wait)."""
    if rule.kind == EXIT:
        if exit_code is None:
            raise NotReady(f"{name}: this backend cannot tell its workload's exit status")
        began = time.monotonic()
        tail = read_to_eof(fd, timeout, name, error=NotReady, error_prefix=error_prefix)
        check_exit(name, exit_code(max(0.0, timeout - (time.monotonic() - began))), tail,
                   timeout)
        return
    if rule.kind == TCP:
        if address is None:
            raise NotReady(f"{name}: no address to connect to (network must be bridge)")
        connect_ready(address, rule.port, fd, timeout, name, pid, error_prefix)
        return
    read_ready(fd, timeout, name, rule.marker, error_prefix)


def check_exit(name: str, code: int | None, tail: bytes, timeout: float) -> None:
    """The ``exit`` rule's verdict once the workload's output ended: NotReady (one line, with
    the output's ``tail``) unless its exit ``code`` is 0; None: it had not exited within
    ``timeout``."""
    shown = tail.decode(errors="replace").strip()
    if code is None:
        raise NotReady(f"{name}: workload closed its output but still runs after "
                       f"{timeout:g} s (no exit)")
    if code != 0:
        what = f"signal {-code}" if code < 0 else f"status {code}"
        raise NotReady(f"{name}: workload exited with {what} (output: {shown!r})")


def connect_ready(address: str, port: int, fd: int | None, timeout: float, name: str,
                  pid: int | None = None, error_prefix: bytes | None = None, *,
                  whole: float | None = None, eof_is_exit: bool = False) -> None:
    """Block until a TCP connection to ``address:port`` is accepted (then closed at once);
    NotReady on timeout, or once the workload (``pid``) exited or wrote a launch failure
    (``error_prefix``) on ``fd``. ``whole`` is the wait's timeout as the caller was given it,
    named in the timeout's message when part of it went before (an engine's inspect);
    ``eof_is_exit``: the end of ``fd`` means the workload exited (an engine's attach stream,
    closed once its container stopped), which ends the wait as the pidfd does."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    pidfd = None
    if fd is not None:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            pidfd = os.pidfd_open(pid)
            poller.register(pidfd, select.POLLIN)
    tail = b""
    pause = RETRY_FIRST_S
    try:
        if pid is not None and pidfd is None:  # gone, and reaped already (by a subreaper)
            raise NotReady(f"{name}: workload exited before port {port} accepted a "
                           "connection")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotReady(f"{name}: port {port} on {address} accepted no connection "
                               f"within {whole or timeout:g} s")
            try:
                with socket.create_connection((address, port),
                                              timeout=min(remaining, ATTEMPT_S)):
                    return
            except TimeoutError:
                continue  # a SYN unanswered: a new one now (the deadline is checked above)
            except OSError as error:
                if error.errno not in NOT_YET:
                    raise NotReady(f"{name}: connecting to {address}:{port}: {error}"
                                   ) from None
            remaining = deadline - time.monotonic()
            for ready_fd, _ in poller.poll(max(0.0, min(pause, remaining)) * 1000):
                chunk = b"" if ready_fd == pidfd else os.read(ready_fd, 65536)
                if ready_fd == pidfd or (not chunk and eof_is_exit):
                    shown = tail[-200:].decode(errors="replace").strip()
                    raise NotReady(f"{name}: workload exited before port {port} accepted a "
                                   f"connection (output: {shown!r})")
                if not chunk:  # its output closed: the pidfd (if any) tells an exit
                    poller.unregister(ready_fd)
                    continue
                tail = (tail + chunk)[-4096:]
                if error_prefix and error_prefix in tail:
                    message = tail.split(error_prefix, 1)[1].split(b"\n", 1)[0]
                    raise NotReady(f"{name}: launch failed: "
                                   f"{message.decode(errors='replace')}")
            pause = min(pause * 2, RETRY_MAX_S)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def wait_then_close(handle, timeout: float, name: str, rule: ReadyRule | None = None, *,
                    exit_code: ExitCode | None = None, address: str | None = None,
                    pid: int | None = None, error_prefix: bytes | None = None) -> None:
    """Wait for ``rule`` (READY by default) on ``handle.ready_fd`` (if still open), then
    close it for good.

    No descriptor is kept per live instance: after readiness the pipe has done its job.
    """
    if handle.ready_fd is None:
        return
    try:
        if rule is None:
            read_ready(handle.ready_fd, timeout, name, error_prefix=error_prefix)
        else:
            wait_rule(rule, handle.ready_fd, timeout, name, exit_code=exit_code,
                      address=address, pid=pid, error_prefix=error_prefix)
    finally:
        close_ready(handle)


def close_ready(handle) -> None:
    """Close ``handle.ready_fd`` once (stop() of an instance that never got READY)."""
    fd, handle.ready_fd = handle.ready_fd, None  # forgotten first: a Ctrl-C here cannot
    if fd is not None:                            # make a later call close it twice
        os.close(fd)


def reaped_exit_code(handle, timeout: float) -> int | None:
    """For a backend whose workload is the harness's own child (``handle.pid``): its exit
    code once it exited within ``timeout``, reaped and ``handle.exited`` set; else None."""
    code = child_exit_code(handle.pid, timeout)
    if code is not None:
        handle.exited = True
    return code
