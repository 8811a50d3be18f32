"""A container as a record: :class:`Container` and its state file, ``state.json``."""

from __future__ import annotations

import json
import os
import signal
import socket
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostkit.files import atomic_write
from hostkit.procs import process_alive
from runtime import network
from runtime.plan import LaunchPlan
from runtime.spec import Spec, SpecError

STATE_FILE = "state.json"


@dataclass
class ExitInfo:
    status: int | None  # wait status when we reaped it, else None
    oom_killed: bool

    @property
    def signal(self) -> int | None:
        if self.status is not None and os.WIFSIGNALED(self.status):
            return os.WTERMSIG(self.status)
        return None

    @property
    def code(self) -> int | None:
        if self.status is not None and os.WIFEXITED(self.status):
            return os.WEXITSTATUS(self.status)
        return None

    def describe(self) -> str:
        if self.oom_killed:
            return "killed by the kernel: out of memory (cgroup limit)"
        if self.signal is not None:
            return f"killed by signal {signal.Signals(self.signal).name}"
        if self.code is not None:
            return f"exited with code {self.code}"
        return "exited"


@dataclass
class Container:
    """One container and every host object it holds."""

    name: str
    spec: Spec
    directory: Path
    cgroup: str
    pid: int | None = None
    pid_start: int | None = None
    state: str = "created"  # created | running | stopped
    net: network.Attachment | None = None
    owner_pid: int | None = None
    owner_start: int | None = None
    exit: ExitInfo | None = None
    # held in memory only, not in the state file:
    ready_fd: int | None = field(default=None, repr=False)  # read end of the output pipe
    plan: LaunchPlan | None = field(default=None, repr=False)  # made by create, used by start
    spare: int | None = field(default=None, repr=False)  # warm: pid of its spare, until start
    # warm: the host channel to its prepared init, until start (runtime.child.wait_for_start)
    channel: socket.socket | None = field(default=None, repr=False)
    # cold: its seccomp program, being compiled since create, until start sends it
    program: Future[bytes] | None = field(default=None, repr=False)

    def to_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "state": self.state,
            "cgroup": self.cgroup,
            "network": vars(self.net) if self.net else None,
            "owner_pid": self.owner_pid,
            "owner_start": self.owner_start,
            "exit": vars(self.exit) if self.exit else None,
            # without the seccomp section (tens of kB per container); its digest says which
            "spec": self.spec.to_oci(seccomp=False),
            "seccomp": self.spec.linux.seccomp.digest if self.spec.linux.seccomp else None,
        }

    @classmethod
    def from_state(cls, directory: Path, data: dict[str, Any]) -> Container:
        return cls(
            name=data["name"],
            spec=Spec.from_oci(data["spec"]),
            directory=directory,
            cgroup=data["cgroup"],
            pid=data.get("pid"),
            pid_start=data.get("pid_start"),
            state=data.get("state", "created"),
            net=network.Attachment(**data["network"]) if data.get("network") else None,
            owner_pid=data.get("owner_pid"),
            owner_start=data.get("owner_start"),
            exit=ExitInfo(**data["exit"]) if data.get("exit") else None,
        )

    def save(self) -> None:
        atomic_write(self.directory / STATE_FILE, json.dumps(self.to_state()), fsync=False)

    @property
    def running(self) -> bool:
        return self.state == "running" and process_alive(self.pid, self.pid_start)


def load(directory: Path) -> Container | None:
    """The container whose state file is in ``directory``; None if there is none readable."""
    try:
        with open(directory / STATE_FILE) as handle:
            return Container.from_state(directory, json.load(handle))
    except (OSError, ValueError, KeyError, SpecError):
        return None
