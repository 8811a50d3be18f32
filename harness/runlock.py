"""A lock on the state directory: runs share it, `cvbench clean` needs it alone.

So a clean never sweeps away the instances of a run that is still going on; a run killed with
SIGKILL releases its share at once (the kernel drops flock locks of dead processes).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from hostkit.paths import state_dir


class RunInProgress(Exception):
    """Another cvbench process holds the state directory."""


def _open_lock() -> int:
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return os.open(directory / "run.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


@contextmanager
def _locked(mode: int) -> Iterator[None]:
    fd = _open_lock()
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInProgress(
                f"a cvbench run is in progress on {state_dir()}: wait for it, stop it, "
                "or pass --force"
            ) from None
        yield
    finally:
        os.close(fd)


def running() -> AbstractContextManager[None]:
    """Held for the whole of a run (shared: several runs may share a state directory)."""
    return _locked(fcntl.LOCK_SH)


def exclusive() -> AbstractContextManager[None]:
    """Held by `cvbench clean`: fails at once while any run holds the state directory."""
    return _locked(fcntl.LOCK_EX)
