"""Atomic file writes: a reader sees the old content or the new one, never half of it."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename.

    ``mode`` is applied to the file (``mkstemp`` would leave 0600); ``fsync`` makes the content
    durable before the rename (results), at the cost of a disk flush (skip it for state that a
    crash makes obsolete anyway).
    """
    raw = data.encode() if isinstance(data, str) else data
    atomic_write_with(path, lambda handle: handle.write(raw), mode, fsync)


def atomic_write_with(path: Path, writer: Callable[[BinaryIO], object], mode: int = 0o644,
                      fsync: bool = True) -> None:
    """Like :func:`atomic_write`, with ``writer(handle)`` producing the content."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            writer(handle)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha256_of(path: Path) -> str:
    """The hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
