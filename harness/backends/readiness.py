"""Wait for a workload's ``READY`` line on a file descriptor, event-driven (no polling)."""

from __future__ import annotations

import os
import select
import time

from harness.backends.base import NotReady

READY = b"READY"


def read_ready(fd: int, timeout: float, name: str) -> None:
    """Block until a line ``READY`` arrives on ``fd``; raise NotReady on timeout or EOF."""
    deadline = time.monotonic() + timeout
    buffered = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise NotReady(f"{name}: no READY within {timeout:g} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise NotReady(f"{name}: workload exited before READY (output: {buffered[-200:]!r})")
        buffered += chunk
        if any(line.strip() == READY for line in buffered.split(b"\n")):
            return
