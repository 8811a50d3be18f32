"""The one interface every backend implements, and the data it exchanges with the runner.

The measurement rules every backend keeps (``docs/architecture.md``):

- **cold** (:meth:`Backend.start`): nothing of the instance exists before the call (a
  resident server or daemon may run); **warm** (:meth:`Backend.create`, untimed, then
  :meth:`Backend.resume`, timed): the backend's own way of preparing an instance ahead.
- start → READY: from the start request until the instance's readiness rule holds
  (:class:`InstanceSpec.ready`, :mod:`harness.backends.ready_rule`; by default the READY line
  on the workload's output).
- stop → gone (:meth:`Backend.stop`): from the stop request until the instance's last
  process has exited, observed through a pidfd (for VMs: QEMU's own exit); the clean-up of
  its state (:meth:`Backend.remove`) is timed apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from harness.backends.launch import Launch
from harness.backends.ready_rule import DEFAULT as DEFAULT_READY
from harness.backends.ready_rule import ReadyRule
from imagestore.image import Image


class BackendError(Exception):
    """A backend could not do what was asked; the message says why, in one line."""


class NotReady(BackendError):
    """The instance's readiness rule did not hold in time (no READY line, no exit with status
    0, no TCP connection accepted), or the instance died before it did."""


VOLUME_PATH = "/data"  # where an instance sees the host directory of InstanceSpec.volume


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
    command: tuple[str, ...] = ()  # containers only: run this instead of the image's /init
    # NAME=value for the workload: containers and process get them in their environment, VMs
    # on the kernel command line (the guest kernel hands them to init as its environment).
    env: tuple[str, ...] = ()
    # A host directory handed in: containers bind-mount it at VOLUME_PATH; VMs (disk = true)
    # get a raw ext4 disk made in it, mounted at VOLUME_PATH; process uses the directory as is.
    volume: Path | None = None
    # What READY means (a line, the workload's exit, a TCP port): one rule for every backend;
    # a backend honours the kinds in its ``ready_kinds`` (the runner refuses the others).
    ready: ReadyRule = DEFAULT_READY
    # An imported image's process (entrypoint, cmd, env, workdir, user), resolved by the
    # runner; None for an image cvbench built. Backends read it through
    # harness.backends.launch (argv, environment), never field by field.
    launch: Launch | None = None


@dataclass
class Instance:
    """A started instance. ``handle`` is the backend's own object; ``pids`` the host pids."""

    name: str
    backend: str
    handle: Any = None
    pids: list[int] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # backend's own start phases, s
    variant: str = "cold"  # "warm", "restore": made by create(), not running until resume()
    # The harness's own work inside a timed step, s, by metric name, where a backend tells it
    # from the work it measures (the OCI backends: HARNESS_METRICS), recorded apart.
    harness: dict[str, float] = field(default_factory=dict)
    ready: ReadyRule = DEFAULT_READY  # its spec's readiness rule (Chores sets it)


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


COLD = "cold"
WARM = "warm"
# What every container backend's warm start does inside the clock once its runtime's start
# reached the waiting init (crun 1.8's start: the init's exec fifo opened): the same split
# for every runtime (tests/integration/harness/backends/test_warm_split.py checks the system calls).
WARM_AFTER_CLOCK = ("the init installs the seccomp filter, marks its descriptors from 3 "
                    "close-on-exec and execs the workload; until READY")
RESTORE = "restore"  # from a snapshot made before the clock; never mixed with cold or warm
VARIANTS = (COLD, WARM, RESTORE)
# The harness's own share of a timed step (Instance.harness): inside the start (cold) or the
# resume (warm) call, the stop, and the clean-up.
HARNESS_START = "harness_s"
HARNESS_STOP = "stop_harness_s"
HARNESS_CLEANUP = "cleanup_harness_s"
HARNESS_METRICS = (HARNESS_START, HARNESS_STOP, HARNESS_CLEANUP)


@runtime_checkable
class Backend(Protocol):
    """How one kind of instance is started, awaited, measured, stopped and removed."""

    name: str
    variants: tuple[str, ...]  # COLD; WARM if it can prepare an instance ahead; RESTORE if it
    # can start one from a snapshot

    def prepare(self, image: Image) -> None:
        """Check the host and make per-image artifacts; raise BackendError if impossible."""

    def start(self, spec: InstanceSpec) -> Instance:
        """Cold start: make and launch one instance; return as soon as it is launched."""

    def create(self, spec: InstanceSpec, variant: str = WARM) -> Instance:
        """Warm or restore, before the clock: prepare one instance as far as the backend can
        without running its workload (BackendError if the backend lacks the variant)."""

    def resume(self, instance: Instance) -> None:
        """Warm or restore, inside the clock: let a created instance run its workload."""

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        """Block until the instance's ``spec.ready`` rule holds (by default: the workload
        printed READY); raise NotReady on timeout, death or (rule ``exit``) a non-zero
        status."""

    def stop(self, instance: Instance) -> None:
        """Stop the instance; return once its last process has exited."""

    def remove(self, instance: Instance) -> None:
        """Release everything a stopped instance held (state, cgroups, files, domain)."""

    def memory(self, instance: Instance) -> MemorySample:
        """Memory used by one running instance."""

    def cleanup(self) -> None:
        """Stop and remove whatever this backend still has; idempotent."""

    def describe(self) -> dict[str, Any]:
        """Versions, accel, and ``method``: per variant what happens before the clock and
        inside it, how stop works, the isolation profile (see :class:`Method`)."""


@dataclass(frozen=True)
class Method:
    """What a backend does for one measurement, said in words for the report's methodology.

    ``before_clock``/``inside_clock`` per variant; ``stop`` and ``remove`` as timed.
    """

    cold: tuple[str, str]  # (before the clock, inside the clock)
    stop: str
    remove: str
    warm: tuple[str, str] | None = None
    restore: tuple[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        variants = {COLD: self.cold, **({WARM: self.warm} if self.warm else {}),
                    **({RESTORE: self.restore} if self.restore else {})}
        return {"variants": {name: {"before_clock": before, "inside_clock": inside}
                             for name, (before, inside) in variants.items()},
                "stop": self.stop, "remove": self.remove}


def no_warm_start(name: str, variant: str = WARM) -> BackendError:
    return BackendError(f"backend {name!r} has no {variant} start")


def launch(backend: Backend, spec: InstanceSpec, variant: str) -> Instance:
    """Start ``spec`` the way ``variant`` does, all at once (no clock in between): cold is
    ``start``; warm and restore are ``create`` then ``resume``. For probes and tests; the
    scenario kinds time the two steps apart."""
    if variant in (WARM, RESTORE):
        instance = backend.create(spec, variant)
        backend.resume(instance)
        return instance
    return backend.start(spec)
