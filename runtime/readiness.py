"""The workload's output pipe: wait for its ``READY`` line (or another ``marker``), or for its
end of file (:func:`read_to_eof`: a workload that runs to completion), event-driven (no
polling).

A launch that fails before exec writes one line starting with :data:`ERROR_PREFIX` instead.
"""

from __future__ import annotations

import os
import select
import time

READY = b"READY"
ERROR_PREFIX = b"cvbench-error: "  # a launch failure's message follows, up to the newline


def read_ready(
    fd: int,
    timeout: float,
    name: str,
    error: type[Exception] = TimeoutError,
    error_prefix: bytes | None = None,
    marker: bytes = READY,
) -> None:
    """Block until a line ``marker`` (``READY``; spaces around it ignored) arrives on ``fd``.

    Raise ``error`` on timeout, on end of file, or (with ``error_prefix``) on a line that
    starts with it, which carries a launch failure's message.
    """
    shown = marker.decode(errors="replace")
    deadline = time.monotonic() + timeout
    buffered = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise error(f"{name}: no {shown} within {timeout:g} s")
        chunk = os.read(fd, 4096)
        buffered += chunk
        lines = buffered.split(b"\n")
        for line in lines[:-1] if chunk else lines:
            if error_prefix and line.startswith(error_prefix):
                message = line[len(error_prefix):].decode(errors="replace")
                raise error(f"{name}: launch failed: {message}")
            if line.strip() == marker:
                return
        if not chunk:
            tail = buffered[-200:].decode(errors="replace").strip()
            raise error(f"{name}: workload exited before {shown} (output: {tail!r})")


def read_to_eof(
    fd: int,
    timeout: float,
    name: str,
    error: type[Exception] = TimeoutError,
    error_prefix: bytes | None = None,
) -> bytes:
    """Read ``fd`` until end of file (every writer closed it: the workload ran to its end);
    the output's last 200 bytes. Raise ``error`` on timeout, or (with ``error_prefix``) on a
    line that starts with it (a launch failure)."""
    deadline = time.monotonic() + timeout
    tail = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise error(f"{name}: workload still runs after {timeout:g} s (no exit)")
        chunk = os.read(fd, 65536)
        tail = (tail + chunk)[-4096:]
        if error_prefix and error_prefix in tail:
            for line in tail.split(b"\n")[:-1] if chunk else tail.split(b"\n"):
                if line.startswith(error_prefix):
                    message = line[len(error_prefix):].decode(errors="replace")
                    raise error(f"{name}: launch failed: {message}")
        if not chunk:
            return tail[-200:]


def read_to_end(fd: int, timeout: float) -> bytes | None:
    """Everything written to ``fd`` until end of file; None if that takes over ``timeout``."""
    deadline = time.monotonic() + timeout
    output = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return output
        output += chunk
