"""The one interface every backend implements, and the data it exchanges with the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from imagestore.image import Image


class BackendError(Exception):
    """A backend could not do what was asked; the message says why, in one line."""


class NotReady(BackendError):
    """The instance did not print READY in time, or died before it did."""


@dataclass(frozen=True)
class InstanceSpec:
    """What to start: the same for every backend, so that runs are comparable."""

    name: str  # always starts with "cvbench-"
    image: Image
    memory_limit_mib: int | None = None  # container memory limit
    pids_limit: int | None = None
    cpu_limit: float | None = None  # CPUs, e.g. 0.5
    network: str = "none"  # none | bridge | host
    guest_memory_mib: int = 128  # VMs only
    vcpus: int = 1  # VMs only
    disk: bool = False  # VMs only: qcow2 overlay disk on a shared base image
    accel: str = "auto"  # VMs only: auto | kvm | tcg


@dataclass
class Instance:
    """A started instance. ``handle`` is the backend's own object; ``pids`` the host pids."""

    name: str
    backend: str
    handle: Any = None
    pids: list[int] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # backend's own start phases, s


@dataclass(frozen=True)
class MemorySample:
    """Memory of one instance in bytes, by several views; None where a view does not apply."""

    pss: int | None = None  # proportional set size of the instance's host processes
    uss: int | None = None  # unique set size of the same processes
    rss: int | None = None
    cgroup: int | None = None  # cgroup memory usage (containers)
    guest_ram: int | None = None  # VM: resident part of the guest-RAM mapping
    vmm_overhead: int | None = None  # VM: process PSS minus guest RAM

    def as_metrics(self) -> dict[str, int]:
        return {
            f"mem_{name}_bytes": value
            for name, value in vars(self).items()
            if value is not None
        }


@runtime_checkable
class Backend(Protocol):
    """How one kind of instance is started, awaited, measured and stopped."""

    name: str

    def prepare(self, image: Image) -> None:
        """Check the host and make per-image artifacts; raise BackendError if impossible."""

    def start(self, spec: InstanceSpec) -> Instance:
        """Start one instance; return as soon as it is launched (not ready)."""

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        """Block until the workload printed READY; raise NotReady on timeout or death."""

    def stop(self, instance: Instance) -> None:
        """Stop the instance and release everything it used; return when it is gone."""

    def memory(self, instance: Instance) -> MemorySample:
        """Memory used by one running instance."""

    def cleanup(self) -> None:
        """Stop whatever this backend still has running; idempotent."""

    def describe(self) -> dict[str, Any]:
        """Versions, accel and other facts that qualify this backend's results."""
