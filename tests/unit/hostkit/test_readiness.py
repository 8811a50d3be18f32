"""READY parsing: the line, the launch error, an early exit, the timeout; reading to the end."""

from __future__ import annotations

import os

import pytest

from hostkit.readiness import ERROR_PREFIX, read_ready, read_to_end
from runtime.errors import NotReadyError


def _pipe_with(data: bytes, close: bool = True) -> int:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    if close:
        os.close(write_fd)
    return read_fd


def _read_ready(fd: int, timeout: float, name: str) -> None:
    read_ready(fd, timeout, name, NotReadyError, ERROR_PREFIX)


def test_read_ready():
    fd = _pipe_with(b"starting\nREADY\n", close=False)
    _read_ready(fd, 1.0, "c")
    os.close(fd)
    fd = _pipe_with(b"cvbench-error: FileNotFoundError: /nope\n")
    with pytest.raises(NotReadyError, match="launch failed: FileNotFoundError"):
        _read_ready(fd, 1.0, "c")
    os.close(fd)
    fd = _pipe_with(b"bye")
    with pytest.raises(NotReadyError, match="exited before READY.*bye"):
        _read_ready(fd, 1.0, "c")
    os.close(fd)
    fd = _pipe_with(b"", close=False)
    with pytest.raises(NotReadyError, match="no READY within"):
        _read_ready(fd, 0.05, "c")
    os.close(fd)


def test_read_to_end():
    fd = _pipe_with(b"one\ntwo")
    assert read_to_end(fd, 1.0) == b"one\ntwo"
    os.close(fd)
    fd = _pipe_with(b"partial", close=False)
    assert read_to_end(fd, 0.05) is None  # the writer is still open
    os.close(fd)
