"""Resource limits through cgroups: one interface, a v1 and a v2 driver.

A container's cgroup is ``<parent>/<shard>/<name>`` (:func:`runtime.scopes.container_cgroup`);
the parent is a ``cvbench-*`` directory, and :meth:`Driver.prepare_layout` makes it and its
shards with their settings before any container. Drivers take the cgroupfs root as a parameter
so that both code paths can be unit-tested on a plain directory.

What a container gets, the same as crun 1.8 and runc 1.1 make for it (as their containers'
``/proc/<pid>/cgroup`` and ``devices.list`` show: the tests
``tests/integration/harness/backends/test_cgroup_layout.py`` and ``test_isolation_probe.py``
read the three runtimes' from the live host):

- **v1 and hybrid hosts**: a directory in *every* mounted v1 hierarchy, named ones included
  (e.g. blkio, cpu, cpuacct, cpuset, devices, freezer, memory, pids and ``name=systemd``),
  whether limited or not, and the container's init joins each one. The new ``cpuset`` cgroup
  gets its parent's ``cpuset.cpus``/``cpuset.mems`` (an empty cpuset cannot be joined): the
  parent and shard levels of every container backend (ours' ``cvbench-<scope>``, crun's and
  runc's ``cvbench-oci``, both made by :meth:`Driver.prepare_layout`) have
  ``cgroup.clone_children`` set, so that the kernel copies them when it makes the directory.
  Under such a parent ours and runc 1.1 (``cpusetCopyIfNeeded``: only into an empty cpuset)
  write none, and crun 1.8 (``initialize_cpuset_subsystem_rec``) reads the copied values and
  writes them back unchanged, which the kernel takes as no change (``update_cpumask`` and
  ``update_nodemask`` return before any check, as strace of both runtimes shows). A changing
  write would cost: each write of ``cpuset.cpus`` checks the cpuset against every sibling
  (``validate_change``) and rebuilds the scheduling domains, walking every cpuset on the host
  (``rebuild_sched_domains_locked``, ``dl_rebuild_rd_accounting``), so with the containers as
  siblings it grows with the number alive (docs/findings/launch-profile.md). The ``devices``
  cgroup gets the spec's rules then the runtime's default allow list
  (:mod:`runtime.devices`), and memory, pids and cpu the spec's limits. The v2 ``unified``
  tree of a hybrid host is not used: crun 1.8 runs on such a host only with it unmounted (it
  refuses hybrid hosts), so it makes nothing there; runc 1.1 does make and join a cgroup there
  (holding whatever controllers the host left to v2, often none). ``ours`` does what crun
  does.
- **v2 hosts**: one directory in the unified tree with memory, pids and cpu enabled from the
  root down, and the device rules as an eBPF program (``BPF_CGROUP_DEVICE``) attached to it
  before any process joins (:mod:`runtime.device_filter`: the program crun generates, loaded
  per container and attached with ``BPF_F_ALLOW_MULTI`` as crun and runc do; no descriptor
  is kept). crun 1.8 with its cgroupfs manager makes the directory before the container's
  init exists and clones the init straight into it (``clone3`` with ``CLONE_INTO_CGROUP``,
  falling back to ``cgroup.procs``); runc 1.1 writes its init's pid into ``cgroup.procs``.
  :meth:`V2Driver.birth_directory` names the directory ``ours`` clones its init into (see
  :mod:`runtime.forkserver`).
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from hostkit import mountinfo as hostkit_mountinfo
from hostkit.procs import wait_pidfd
from runtime import device_filter
from runtime.devices import DeviceRule
from runtime.scopes import LAYOUT, SHARD_PREFIX, SHARDS, shards

CGROUP_ROOT = Path("/sys/fs/cgroup")


class CgroupError(Exception):
    """A cgroup could not be created, limited or removed; the message says which and why."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int | None = None
    pids: int | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int = 100000
    devices: tuple[DeviceRule, ...] = ()  # in order: v1 rule files, v2 an eBPF program


def detect_mode(mountinfo: str | None = None) -> str:
    """``v2`` (unified only), ``v1`` (legacy only) or ``hybrid`` (v1 controllers plus cgroup2)."""
    if mountinfo is None:
        with open("/proc/self/mountinfo") as handle:
            mountinfo = handle.read()
    mounts = hostkit_mountinfo.parse(mountinfo)
    v1 = [m for m in mounts if m.fstype == "cgroup"]
    v2 = [m for m in mounts if m.fstype == "cgroup2"]
    if any(m.point == str(CGROUP_ROOT) for m in v2) and not v1:
        return "v2"
    if v1 and v2:
        return "hybrid"
    if v1:
        return "v1"
    if v2:
        return "v2"
    raise CgroupError("no cgroup filesystem is mounted (neither v1 nor v2)")


def _write(path: Path, value: str, what: str) -> None:
    try:
        with open(path, "w") as handle:
            handle.write(value)
    except OSError as error:
        raise CgroupError(f"cannot set {what} to {value!r} ({path}): {error.strerror}") from None


def _read(path: Path) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def _counter(text: str | None, key: str) -> int:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


class Driver:
    """Common behaviour; subclasses say which directories and files hold what."""

    mode = "?"
    # what :meth:`prepare_layout` gives the parent and each shard (for :meth:`layout`)
    parent_settings = "none"
    # the file a single-threaded process writes ``0`` into to move itself (:meth:`join_files`)
    self_join_file = "cgroup.procs"

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = Path(root)
        self._parents: set[str] = set()

    # -- layout, per driver -----------------------------------------------------------------
    def directories(self, path: str, limits: Limits | None = None) -> list[Path]:
        """Where ``path`` lives: for ``limits``, the ones to create; for None, all of them."""
        raise NotImplementedError

    def _apply(self, path: str, limits: Limits) -> None:
        raise NotImplementedError

    def controllers(self) -> list[str]:
        """The hierarchies (v1) or controllers (v2) a container's cgroup is made in."""
        raise NotImplementedError

    def _prepare_parent(self, parent: str) -> None:
        """Make ``parent`` in every hierarchy (idempotent)."""

    def prepare_parent(self, parent: str) -> None:
        """Make ``parent`` with the settings a container's parent gets (idempotent), before
        any container is made in it: for parents that other runtimes fill."""
        self._prepare_parent(parent)
        self._parents.add(parent)

    def prepare_layout(self, parent: str) -> None:
        """Make ``parent`` and all its shards (:func:`runtime.scopes.shards`) with the settings
        a container's parent gets (idempotent): the one layout of every container backend,
        made in each one's ``prepare()``, so that no start makes a level of it in the clock."""
        self.prepare_parent(parent)
        for level in shards(parent):
            self.prepare_parent(level)

    def layout(self, parent: str) -> dict[str, object]:
        """The layout of the containers under ``parent``, as ``describe()`` records it."""
        return {"parent": parent, "container": LAYOUT, "shards": SHARDS,
                "prepared": f"the parent and its {SHARDS} shards made before the first start",
                "parent_settings": self.parent_settings}

    # -- operations -------------------------------------------------------------------------
    def create(self, path: str, limits: Limits) -> list[Path]:
        """Make ``path`` (``parent/name``) with ``limits``; return the directories made."""
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent and parent not in self._parents:
            self._prepare_parent(parent)
            self._parents.add(parent)
        made: list[Path] = []
        try:
            for directory in self.directories(path, limits):
                try:
                    try:
                        directory.mkdir()
                    except FileNotFoundError:  # the parent was removed meanwhile: remake it
                        self._prepare_parent(parent)
                        directory.mkdir()
                except FileExistsError:
                    raise CgroupError(f"cgroup {directory} already exists") from None
                except OSError as error:
                    raise CgroupError(
                        f"cannot create cgroup {directory}: {error.strerror}"
                    ) from None
                made.append(directory)
            self._apply(path, limits)
        except CgroupError:
            for directory in reversed(made):
                try:
                    _rmdir(directory)
                except CgroupError:
                    pass  # report the first error, not the clean-up's
            raise
        return made

    def join_files(self, path: str, limits: Limits | None = None, *,
                   by_itself: bool = False) -> list[str]:
        """The files a pid is written into to join ``path`` (made by :meth:`create` with
        ``limits``): ``cgroup.procs``, or, for a single-threaded process that moves itself
        (``by_itself``, writing ``0``: a cold init, a fresh fork), :attr:`self_join_file`."""
        name = self.self_join_file if by_itself else "cgroup.procs"
        return [str(d / name) for d in self.directories(path, limits)]

    def birth_directory(self, path: str) -> str:
        """The cgroup v2 directory a cold init of ``path`` is cloned into (clone3 with
        ``CLONE_INTO_CGROUP``); "" where there is none (v1 hierarchies: joined by writes)."""
        return ""

    def procs(self, path: str) -> list[int]:
        text = _read(self.directories(path)[0] / "cgroup.procs")
        return [int(p) for p in (text or "").split()]

    def exists(self, path: str) -> bool:
        return any(d.is_dir() for d in self.directories(path))

    def memory_usage(self, path: str) -> int | None:
        raise NotImplementedError

    def oom_kills(self, path: str) -> int:
        raise NotImplementedError

    def kill(self, path: str, timeout: float = 5.0) -> list[int]:
        """SIGKILL every process in ``path`` and wait (event-driven) until they are gone.

        A batch: every pidfd is opened, then every process signalled, then each awaited.
        """
        killed = self.procs(path)
        fds = []
        for pid in killed:
            try:
                fds.append(os.pidfd_open(pid))
            except OSError:
                continue
        try:
            for fd in fds:
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except OSError:
                    pass
            for fd in fds:
                wait_pidfd(fd, timeout)
        finally:
            for fd in fds:
                os.close(fd)
        return killed

    def remove(self, path: str) -> None:
        """Remove ``path`` from every hierarchy; missing directories are fine."""
        for directory in self.directories(path):
            _rmdir(directory)

    def children(self, parent: str) -> list[str]:
        """Names of the cgroups directly under ``parent`` (first hierarchy)."""
        base = self.directories(parent)[0]  # memory (v1) or the unified directory
        try:
            return sorted(e.name for e in os.scandir(base) if e.is_dir())
        except FileNotFoundError:
            return []

    def containers(self, parent: str) -> list[str]:
        """The containers' cgroups under ``parent``, relative to it: ``<shard>/<name>`` for
        each one in a shard (:func:`runtime.scopes.container_cgroup`), ``<name>`` for one made
        directly under it."""
        found = []
        for name in self.children(parent):
            if name.startswith(SHARD_PREFIX):
                found += [f"{name}/{child}" for child in self.children(f"{parent}/{name}")]
            else:
                found.append(name)
        return found

    def remove_parent(self, parent: str) -> bool:
        """Remove ``parent`` (and its empty shards) if empty in every hierarchy; True if it is
        gone."""
        for name in self.children(parent):
            if name.startswith(SHARD_PREFIX):
                self.remove_parent(f"{parent}/{name}")
        gone = True
        for directory in self.directories(parent):
            try:
                _rmdir(directory)
            except CgroupError:
                gone = False
        self._parents = {p for p in self._parents if p != parent and
                         not p.startswith(f"{parent}/")}
        return gone


def _rmdir(directory: Path) -> None:
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        pass
    except OSError as error:
        if error.errno in (errno.EBUSY, errno.ENOTEMPTY):
            raise CgroupError(f"cgroup {directory} is still in use") from None
        raise CgroupError(f"cannot remove cgroup {directory}: {error.strerror}") from None


class V1Driver(Driver):
    """Legacy hierarchies: one directory per hierarchy, in every mounted v1 hierarchy."""

    mode = "v1"
    parent_settings = ("in every hierarchy a container joins; cpuset: "
                       "cgroup.clone_children = 1 and the root's cpuset.cpus and cpuset.mems, "
                       "which the kernel copies into each new cgroup when it makes it")
    # A write of another process's pid into cgroup.procs takes the kernel's global threadgroup
    # lock, and the first one after an idle spell waits for an RCU grace period (several ms).
    # A thread that moves itself through ``tasks`` is moved without that lock
    # (``cgroup_procs_write_start``), and the one thread of a fresh fork is the whole process,
    # so it ends where ``cgroup.procs`` would put it, with no grace period. (v2 has no
    # ``tasks``, and ``cgroup.threads`` cannot cross domains; there a cold init is born in its
    # cgroup instead.)
    self_join_file = "tasks"

    def __init__(self, root: Path = CGROUP_ROOT, hierarchies: tuple[str, ...] | None = None
                 ) -> None:
        super().__init__(root)
        self.hierarchies = v1_hierarchies(self.root) if hierarchies is None else hierarchies

    def directories(self, path: str, limits: Limits | None = None) -> list[Path]:
        return [self.root / h / path for h in self.hierarchies]

    def controllers(self) -> list[str]:
        return list(self.hierarchies)

    def _prepare_parent(self, parent: str) -> None:
        """Make every level of ``parent`` (``cvbench-x`` or ``cvbench-x/shard-3``)."""
        parts = parent.split("/")
        for depth in range(1, len(parts) + 1):
            level = "/".join(parts[:depth])
            for hierarchy in self.hierarchies:
                (self.root / hierarchy / level).mkdir(exist_ok=True)
            if "cpuset" in self.hierarchies:
                _inherit_cpuset(self.root / "cpuset" / level)
                # children get the parent's cpus and mems from the kernel when made: no write
                # of cpuset.cpus per container, so no sibling check and no sched-domain rebuild
                _write(self.root / "cpuset" / level / "cgroup.clone_children", "1",
                       "cpuset clone_children")

    def _apply(self, path: str, limits: Limits) -> None:
        if "cpuset" in self.hierarchies:
            _inherit_cpuset(self.root / "cpuset" / path)
        if limits.devices and "devices" in self.hierarchies:
            devices = self.root / "devices" / path
            for rule in limits.devices:
                _write(devices / rule.v1_file(), rule.v1_line(), "device rule")
        if limits.memory_bytes is not None:
            memory = self.root / "memory" / path
            _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes), "memory limit")
            if (memory / "memory.memsw.limit_in_bytes").exists():
                _write(
                    memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes), "swap limit"
                )
        if limits.pids is not None:
            _write(self.root / "pids" / path / "pids.max", str(limits.pids), "pids limit")
        if limits.cpu_quota_us is not None:
            cpu = self.root / "cpu" / path
            _write(cpu / "cpu.cfs_period_us", str(limits.cpu_period_us), "cpu period")
            _write(cpu / "cpu.cfs_quota_us", str(limits.cpu_quota_us), "cpu quota")

    def memory_usage(self, path: str) -> int | None:
        text = _read(self.root / "memory" / path / "memory.usage_in_bytes")
        return int(text) if text else None

    def oom_kills(self, path: str) -> int:
        return _counter(_read(self.root / "memory" / path / "memory.oom_control"), "oom_kill")


class V2Driver(Driver):
    """The unified hierarchy: one directory, controllers enabled from the root down.

    Every controller the root offers is enabled on the way to the container (the root's
    ``cgroup.controllers``), as runc 1.1 does for its parent; crun 1.8 enables the ones it
    knows (cpu, cpuset, io, memory, pids, hugetlb) below a parent that already has the rest.
    The harness gives the OCI runtimes' parent and its shards the same
    (:meth:`Driver.prepare_layout`), so a container of every runtime sees the same controllers
    whoever made the parent first.
    """

    mode = "v2"
    parent_settings = ("every controller of the root's cgroup.controllers enabled in "
                       "cgroup.subtree_control, from the root down to each shard")

    def directories(self, path: str, limits: Limits | None = None) -> list[Path]:
        return [self.root / path]

    def controllers(self) -> list[str]:
        return sorted((_read(self.root / "cgroup.controllers") or "").split())

    def _enable(self, directory: Path) -> None:
        wanted = set(self.controllers())
        enabled = set((_read(directory / "cgroup.subtree_control") or "").split())
        available = _read(directory / "cgroup.controllers")
        if available is not None:
            wanted &= set(available.split())
        missing = sorted(wanted - enabled)
        if missing:
            _write(
                directory / "cgroup.subtree_control",
                " ".join(f"+{c}" for c in missing),
                "subtree controllers",
            )

    def _prepare_parent(self, parent: str) -> None:
        self._enable(self.root)
        directory = self.root
        for part in parent.split("/"):
            directory = directory / part
            directory.mkdir(exist_ok=True)
            self._enable(directory)

    def birth_directory(self, path: str) -> str:
        return str(self.root / path)

    def _apply(self, path: str, limits: Limits) -> None:
        directory = self.root / path
        if limits.devices:
            try:
                device_filter.attach(directory, limits.devices)
            except OSError as error:
                raise CgroupError(f"cannot attach the device filter to {directory}: "
                                  f"{error.strerror}") from None
        if limits.memory_bytes is not None:
            _write(directory / "memory.max", str(limits.memory_bytes), "memory limit")
            if (directory / "memory.swap.max").exists():
                _write(directory / "memory.swap.max", "0", "swap limit")
        if limits.pids is not None:
            _write(directory / "pids.max", str(limits.pids), "pids limit")
        if limits.cpu_quota_us is not None:
            _write(
                directory / "cpu.max",
                f"{limits.cpu_quota_us} {limits.cpu_period_us}",
                "cpu quota",
            )

    def memory_usage(self, path: str) -> int | None:
        text = _read(self.root / path / "memory.current")
        return int(text) if text else None

    def oom_kills(self, path: str) -> int:
        return _counter(_read(self.root / path / "memory.events"), "oom_kill")

    def kill(self, path: str, timeout: float = 5.0) -> list[int]:
        before = self.procs(path)
        killfile = self.root / path / "cgroup.kill"
        if killfile.exists():  # kills forks racing with us too (Linux 5.14+)
            try:
                _write(killfile, "1", "cgroup.kill")
            except CgroupError:
                pass
        return sorted(set(before) | set(super().kill(path, timeout)))


def driver(mode: str | None = None, root: Path = CGROUP_ROOT) -> Driver:
    """The driver for this host: v1 hierarchies when the memory controller is on v1."""
    mode = mode or detect_mode()
    if mode == "v2":
        return V2Driver(root)
    if mode in ("v1", "hybrid"):
        return V1Driver(root)
    raise CgroupError(f"unknown cgroup mode {mode!r}")


def v1_hierarchies(root: Path = CGROUP_ROOT) -> tuple[str, ...]:
    """Every v1 hierarchy mounted under ``root``, memory first (it lists the processes): each
    directory that is not an alias (symlink) nor the cgroup2 tree (which has
    ``cgroup.controllers``)."""
    try:
        entries = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return ("memory",)
    names = sorted(e.name for e in entries
                   if not os.path.exists(os.path.join(e.path, "cgroup.controllers")))
    return ("memory", *(name for name in names if name != "memory"))


def _inherit_cpuset(directory: Path) -> None:
    """Give a new v1 cpuset cgroup its parent's CPUs and memory nodes (empty ones cannot be
    joined), as crun and runc do."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = _read(directory / name)
        if own is None or own.strip():
            continue
        inherited = _read(directory.parent / name)
        if inherited and inherited.strip():
            _write(directory / name, inherited.strip(), name)


def every_hierarchy(mode: str | None = None, root: Path = CGROUP_ROOT) -> Driver:
    """A driver for cgroups made in every hierarchy mounted under ``root`` (as OCI runtimes make
    them, the unified tree of a hybrid host too, where runc makes one): on v1 and hybrid hosts
    each directory under ``root`` (``name=systemd`` and ``unified`` too), memory first, as it
    lists the processes; on v2 the one tree."""
    mode = mode or detect_mode()
    if mode == "v2":
        return V2Driver(root)
    if not root.is_dir():
        return V1Driver(root, ("memory",))
    names = sorted(e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False))
    return V1Driver(root, ("memory", *(name for name in names if name != "memory")))
