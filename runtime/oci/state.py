"""An OCI container's state under the runtime's ``--root``, and the state JSON the OCI
runtime spec defines (``cvbench-runtime state``).

``<root>/<id>/`` holds ``record.json`` (:class:`Record`: what ``create`` made), ``exec.fifo``
(the FIFO the container's init waits on until ``start``: :func:`runtime.child.wait_for_start`)
and ``rootfs``, the mount point the init binds the bundle's root on inside its own mount
namespace (on the host it stays an empty directory). The directory is made by ``create``
under a temporary name and renamed into place once complete, so a container either exists
with its record or not at all; ``delete`` removes it.

The status, as the spec defines it, is read from the host, never stored: ``created`` while
the init lives and the exec FIFO is there, ``running`` once ``start`` removed the FIFO and
while the init lives, ``stopped`` once it exited (a zombie counts: it runs nothing).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hostkit.procs import proc_start_time, process_alive, running

DEFAULT_ROOT = Path("/run/cvbench-runtime/oci")
RECORD = "record.json"
FIFO = "exec.fifo"
CGROUP = "cgroup"  # in a directory being made: the cgroup create is about to make
ROOTFS = "rootfs"
CREATING_PREFIX = ".new-"
# OCI leaves the id's form to the runtime; Docker's and Podman's are 64 hex digits
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class StateError(Exception):
    """No such container, one in the wrong state, or a state directory that cannot be used;
    the message is one line."""


@dataclass
class Record:
    """What ``create`` made for one container, as ``record.json`` keeps it."""

    id: str
    bundle: str
    pid: int
    pid_start: int
    cgroup: str  # relative to each hierarchy's root
    created: str  # RFC 3339, UTC
    oci_version: str  # the config's ociVersion
    annotations: dict[str, str] = field(default_factory=dict)
    default_cgroup_parent: bool = False  # the cgroup's parent is ours: removed once empty
    hooks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # poststart, poststop


def check_id(container_id: str) -> str:
    """``container_id`` if it can name a container, else StateError."""
    if not ID_RE.match(container_id):
        raise StateError(f"invalid container id {container_id!r}: letters, digits, '.', '_' "
                         "or '-', at most 128, not starting with a symbol")
    return container_id


@dataclass(frozen=True)
class Store:
    """The containers under one ``--root``."""

    root: Path = DEFAULT_ROOT

    def directory(self, container_id: str) -> Path:
        return self.root / check_id(container_id)

    def fifo(self, container_id: str) -> Path:
        return self.directory(container_id) / FIFO

    def make(self, container_id: str) -> Path:
        """A new, complete-but-empty state directory (``rootfs`` and ``exec.fifo`` in it)
        under a temporary name that names its maker (``.new-<pid>-<start time>-<id>``: what
        :mod:`runtime.oci.sweep` removes once the maker is gone); :meth:`commit` puts it in
        place. StateError if ``container_id`` is taken."""
        final = self.directory(container_id)
        if final.exists():
            raise StateError(f"container {container_id} already exists")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        pid = os.getpid()
        temporary = self.root / f"{CREATING_PREFIX}{pid}-{proc_start_time(pid)}-{container_id}"
        import shutil  # here, not at the top: start, state, kill never need it

        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(mode=0o700)
        (temporary / ROOTFS).mkdir()
        os.mkfifo(temporary / FIFO, 0o600)
        return temporary

    def commit(self, temporary: Path, record: Record) -> None:
        """Write ``record`` into ``temporary`` and rename it into place (StateError if the
        id was taken meanwhile)."""
        from hostkit.files import atomic_write  # create's alone: see shutil above

        atomic_write(temporary / RECORD, json.dumps(asdict(record)), fsync=False)
        try:
            os.rename(temporary, self.directory(record.id))
        except OSError:
            raise StateError(f"container {record.id} already exists") from None

    def load(self, container_id: str) -> Record:
        path = self.directory(container_id) / RECORD
        try:
            with open(path) as handle:
                return Record(**json.load(handle))
        except FileNotFoundError:
            raise StateError(f"container {container_id} does not exist") from None
        except (OSError, ValueError, TypeError) as error:
            raise StateError(f"container {container_id}: unreadable {path}: {error}") from None

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(entry.name for entry in os.scandir(self.root)
                      if ID_RE.match(entry.name) and (Path(entry.path) / RECORD).exists())

    def remove(self, container_id: str) -> None:
        """Remove the container's state directory."""
        self.discard(self.directory(container_id))

    @staticmethod
    def discard(directory: Path) -> None:
        """Remove a state directory (what :meth:`make` put there, by name; all of it else)."""
        for name in (RECORD, FIFO, CGROUP):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / name)
        try:
            os.rmdir(directory / ROOTFS)
            os.rmdir(directory)
        except FileNotFoundError:
            pass
        except OSError:
            import shutil

            shutil.rmtree(directory, ignore_errors=True)

    def status(self, record: Record) -> str:
        """``created``, ``running`` or ``stopped`` (see the module's docstring)."""
        if not process_alive(record.pid, record.pid_start) or not running(record.pid):
            return "stopped"
        return "created" if self.fifo(record.id).exists() else "running"

    def state(self, record: Record) -> dict[str, Any]:
        """The state JSON of the OCI runtime spec (``pid`` only while the init lives)."""
        status = self.status(record)
        state: dict[str, Any] = {"ociVersion": record.oci_version, "id": record.id,
                                 "status": status}
        if status != "stopped":
            state["pid"] = record.pid
        state["bundle"] = record.bundle
        state["annotations"] = dict(record.annotations)
        state["created"] = record.created
        return state
