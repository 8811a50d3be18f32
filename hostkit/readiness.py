"""The workload's output pipe: wait for its ``READY`` line (or another ``marker``), or for its
end of file (:func:`read_to_eof`: a workload that runs to completion), event-driven (no
polling).

A launch that fails before exec writes one line starting with :data:`ERROR_PREFIX` instead.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterator

READY = b"READY"
ERROR_PREFIX = b"cvbench-error: "  # a launch failure's message follows, up to the newline


class _TimedOut(Exception):
    """:func:`_chunks` reached its deadline with ``fd`` still open."""


def _chunks(fd: int, timeout: float, size: int = 4096) -> Iterator[bytes]:
    """What ``fd`` delivers, chunk by chunk, the last one empty (end of file): the one
    event-driven read loop of this module. Raises :class:`_TimedOut` once ``timeout``
    seconds have passed with no end of file."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise _TimedOut
        chunk = os.read(fd, size)
        yield chunk
        if not chunk:
            return


def _launch_failure(lines: list[bytes], error_prefix: bytes | None) -> str | None:
    """The message of a launch failure among ``lines`` (one starting with ``error_prefix``)."""
    if error_prefix is None:
        return None
    for line in lines:
        if line.startswith(error_prefix):
            return line[len(error_prefix):].decode(errors="replace")
    return None


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
    buffered = b""
    try:
        for chunk in _chunks(fd, timeout):
            buffered += chunk
            lines = buffered.split(b"\n")
            complete = lines[:-1] if chunk else lines
            failure = _launch_failure(complete, error_prefix)
            if failure is not None:
                raise error(f"{name}: launch failed: {failure}")
            if any(line.strip() == marker for line in complete):
                return
    except _TimedOut:
        raise error(f"{name}: no {shown} within {timeout:g} s") from None
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
    tail = b""
    try:
        for chunk in _chunks(fd, timeout, 65536):
            tail = (tail + chunk)[-4096:]
            if error_prefix and error_prefix in tail:
                lines = tail.split(b"\n")
                failure = _launch_failure(lines[:-1] if chunk else lines, error_prefix)
                if failure is not None:
                    raise error(f"{name}: launch failed: {failure}")
    except _TimedOut:
        raise error(f"{name}: workload still runs after {timeout:g} s (no exit)") from None
    return tail[-200:]


def read_to_end(fd: int, timeout: float) -> bytes | None:
    """Everything written to ``fd`` until end of file; None if that takes over ``timeout``."""
    try:
        return b"".join(_chunks(fd, timeout, 65536))
    except _TimedOut:
        return None
