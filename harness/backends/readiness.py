"""Readiness for backends: :func:`runtime.readiness.read_ready` raising :class:`NotReady`."""

from __future__ import annotations

from harness.backends.base import NotReady
from runtime.readiness import read_ready as _read_ready


def read_ready(fd: int, timeout: float, name: str) -> None:
    """Block until the workload printed READY on ``fd``; NotReady on timeout or exit."""
    _read_ready(fd, timeout, name, error=NotReady)
