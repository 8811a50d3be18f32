"""A container's directory on the host, and the process that owns it.

``<containers dir>/<name>/`` holds an ``owner`` symlink to ``<pid>:<start time>`` of the
process that made it, the overlay's ``upper`` and ``work`` and, once started, ``state.json``;
the directory itself is the overlay's mount point inside the container. It is made under a
temporary name that itself names the owner (``.new-<pid>-<start>-<name>``) and renamed into
place, so a sweep after a SIGKILL at any point finds either an owned directory or one whose
owner it can read from the name, never an ownerless one.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from hostkit.procs import process_alive
from runtime.errors import ContainerError

OWNER_LINK = "owner"  # symlink to "<pid>:<start time>" of the owning process
CREATING_PREFIX = ".new-"  # ".new-<owner pid>-<owner start>-<name>": a directory being made


def make(root: Path, name: str, owner: tuple[int, int | None]) -> Path:
    """Make ``root/name`` with its owner link, ``upper`` and ``work`` in one visible step."""
    root.mkdir(parents=True, exist_ok=True)
    temporary = root / f"{CREATING_PREFIX}{owner[0]}-{owner[1]}-{name}"
    try:
        temporary.mkdir()
        os.symlink(f"{owner[0]}:{owner[1]}", temporary / OWNER_LINK)
        for sub in ("upper", "work"):
            (temporary / sub).mkdir()
        os.rename(temporary, root / name)  # fails: the target exists, never empty
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise ContainerError(f"a container named {name!r} already exists") from None
        raise ContainerError(f"cannot create {name}: {error}") from None
    return root / name


def owner_alive(directory: Path) -> bool:
    """Whether the process that made ``directory`` lives (False: it has no owner)."""
    if directory.name.startswith(CREATING_PREFIX):
        owner = directory.name.removeprefix(CREATING_PREFIX).split("-", 2)[:2]
    else:
        try:
            owner = os.readlink(directory / OWNER_LINK).split(":")
        except OSError:
            return False
    try:
        pid, start = (int(x) for x in owner)
    except ValueError:
        return False
    return process_alive(pid, start)
