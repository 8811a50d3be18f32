"""Readiness for backends: :func:`runtime.readiness.read_ready` raising :class:`NotReady`."""

from __future__ import annotations

import os

from harness.backends.base import NotReady
from runtime.readiness import read_ready as _read_ready


def read_ready(fd: int, timeout: float, name: str) -> None:
    """Block until the workload printed READY on ``fd``; NotReady on timeout or exit."""
    _read_ready(fd, timeout, name, error=NotReady)


def wait_then_close(handle, timeout: float, name: str) -> None:
    """Wait for READY on ``handle.ready_fd`` (if still open), then close it for good.

    No descriptor is kept per live instance: after readiness the pipe has done its job.
    """
    if handle.ready_fd is None:
        return
    try:
        read_ready(handle.ready_fd, timeout, name)
    finally:
        close_ready(handle)


def close_ready(handle) -> None:
    """Close ``handle.ready_fd`` once (stop() of an instance that never got READY)."""
    fd, handle.ready_fd = handle.ready_fd, None  # forgotten first: a Ctrl-C here cannot
    if fd is not None:                            # make a later call close it twice
        os.close(fd)
