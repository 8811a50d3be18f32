"""The kind of host cvbench runs on (cgroup mode, init system), and whether it can run there.

cvbench compares container runtimes by the cgroups they make, so it needs a cgroup tree it
can use the same way on every host kind (docs: "The same on every host kind"):

- **v1 or hybrid** (v1 controllers, perhaps a cgroup2 mount beside them): the v1 ``memory``,
  ``pids`` and ``cpu`` hierarchies mounted under ``/sys/fs/cgroup`` (every container backend
  limits memory, pids and cpu, and reads usage from the memory hierarchy);
- **v2** (cgroup2 only): cgroup2 mounted at ``/sys/fs/cgroup`` itself (where cvbench's, crun's
  and runc's cgroupfs managers make their cgroups), with ``memory``, ``pids`` and ``cpu`` in the
  root's ``cgroup.controllers`` (not bound to a v1 hierarchy) and either enabled in its
  ``cgroup.subtree_control`` or that file writable, so each ``cvbench-*`` parent gets them.

A host without that (no cgroup filesystem at all; v1 without the memory hierarchy; cgroup2
mounted elsewhere with no v1 beside it; a v2 root whose controllers are missing or cannot be
enabled, as in a container given a read-only cgroup tree) is bad input: ``cvbench doctor`` and
``cvbench run`` say what is missing in one line and exit 2 before anything starts.

The init system is recorded, not required: cvbench starts its own processes, reaps them
(subreapers) and names its cgroups itself, under systemd as under any other PID 1; set-up
is what differs (``scripts/setup.sh`` uses ``systemctl`` where systemd is PID 1). It needs
``/proc`` to tell, which it needs anyway (mountinfo, pidfds, every process reading).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hostkit import mountinfo
from runtime import cgroups

REQUIRED_CONTROLLERS = ("memory", "pids", "cpu")  # what every container backend limits
PROC = Path("/proc")
SYSTEMD_MARKER = Path("/run/systemd/system")  # sd_booted(3): systemd is PID 1


class HostKindError(Exception):
    """This host's cgroup tree or init system is one cvbench cannot run on (one line)."""


@dataclass(frozen=True)
class HostKind:
    """What kind of host this is, and what it lacks (``problem``: None if nothing)."""

    cgroup_mode: str  # v1, hybrid, v2, or none
    init_system: str  # systemd, or PID 1's command name
    cgroup2_mount: str | None = None  # where cgroup2 is mounted, if anywhere
    v1_controllers: tuple[str, ...] = ()  # v1 controllers (and named hierarchies) mounted
    v2_controllers: tuple[str, ...] = ()  # the v2 root's cgroup.controllers (v2 hosts)
    problem: str | None = field(default=None, compare=False)

    def summary(self) -> str:
        """One line for ``cvbench doctor``: mode, where the hierarchies are, init."""
        if self.cgroup_mode == "v2":
            where = (f"cgroup2 at {self.cgroup2_mount}, controllers "
                     f"{' '.join(self.v2_controllers) or 'none'}")
        elif self.cgroup_mode in ("v1", "hybrid"):
            v1 = ", ".join(c for c in REQUIRED_CONTROLLERS if c in self.v1_controllers)
            where = f"v1 {v1 or 'none of memory, pids, cpu'}" + (
                f"; cgroup2 at {self.cgroup2_mount}" if self.cgroup2_mount else "")
        else:
            where = "no cgroup filesystem"
        return f"{self.cgroup_mode} ({where}), init {self.init_system}"


def init_system(proc: Path = PROC, marker: Path = SYSTEMD_MARKER) -> str:
    """``systemd`` where systemd is PID 1 (its ``/run/systemd/system`` exists, as
    ``sd_booted()`` checks), else PID 1's command name (``/proc/1/comm``); ``unknown`` if
    neither can be read."""
    if marker.is_dir():
        return "systemd"
    try:
        return (proc / "1" / "comm").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def _words(path: Path) -> set[str] | None:
    try:
        return set(path.read_text().split())
    except OSError:
        return None


def inspect(mounts_text: str | None = None, cgroup_root: Path = cgroups.CGROUP_ROOT,
            proc: Path = PROC, marker: Path = SYSTEMD_MARKER,
            writable: Callable[[Path], bool] = _writable) -> HostKind:
    """This host's kind from its mount table (``mounts_text``: a mountinfo text, default
    ``/proc/self/mountinfo``) and its cgroup root; ``problem`` names what cvbench lacks."""
    init = init_system(proc, marker)
    if mounts_text is None:
        try:
            mounts_text = (proc / "self" / "mountinfo").read_text()
        except OSError as error:
            return HostKind("none", init, problem=f"cannot read {proc}/self/mountinfo "
                            f"({error.strerror}): cvbench needs /proc mounted")
    mounts = mountinfo.parse(mounts_text)
    unified = mountinfo.cgroup2_points(mounts)
    v1 = mountinfo.cgroup_v1_controllers(mounts)
    try:
        mode = cgroups.detect_mode(mounts_text)
    except cgroups.CgroupError:
        return HostKind("none", init, problem="no cgroup filesystem is mounted (neither cgroup2 "
                        f"nor v1 hierarchies): mount cgroup2 on {cgroup_root}")
    cgroup2 = str(cgroup_root) if str(cgroup_root) in unified else (unified[0] if unified
                                                                    else None)
    if mode in ("v1", "hybrid"):
        kind = HostKind(mode, init, cgroup2, tuple(v1))
        missing = [c for c in REQUIRED_CONTROLLERS
                   if c not in v1 or not (cgroup_root / c).is_dir()]
        if missing:
            return HostKind(mode, init, cgroup2, tuple(v1), problem=(
                f"cgroup {mode} without the v1 {_names(missing)} "
                f"{'hierarchy' if len(missing) == 1 else 'hierarchies'} (under {cgroup_root}): "
                f"mount {'it' if len(missing) == 1 else 'them'}, or boot with cgroup v2 only "
                "(systemd.unified_cgroup_hierarchy=1)"))
        return kind
    if str(cgroup_root) not in unified:
        return HostKind(mode, init, cgroup2, problem=(
            f"cgroup2 is mounted at {cgroup2}, not at {cgroup_root} where container cgroups "
            f"are made, and no v1 hierarchy is: mount cgroup2 on {cgroup_root}"))
    available = _words(cgroup_root / "cgroup.controllers") or set()
    kind_args = (mode, init, cgroup2, (), tuple(c for c in sorted(available)))
    missing = [c for c in REQUIRED_CONTROLLERS if c not in available]
    if missing:
        return HostKind(*kind_args, problem=(
            f"cgroup v2 without the {_names(missing)} "
            f"controller{'s' if len(missing) > 1 else ''} (not in {cgroup_root}/"
            "cgroup.controllers; bound to a v1 hierarchy, or disabled with cgroup_disable=)"))
    subtree = cgroup_root / "cgroup.subtree_control"
    enabled = _words(subtree) or set()
    disabled = [c for c in REQUIRED_CONTROLLERS if c not in enabled]
    if disabled and not writable(subtree):
        return HostKind(*kind_args, problem=(
            f"cgroup v2: {_names(disabled)} not enabled in {subtree} and it is not writable, "
            "so container cgroups cannot get them: enable them there, or run where the "
            "cgroup tree is writable"))
    return HostKind(*kind_args)


def check(kind: HostKind | None = None) -> HostKind:
    """This host's kind; :class:`HostKindError` (one line) if cvbench cannot run on it."""
    kind = inspect() if kind is None else kind
    if kind.problem:
        raise HostKindError(kind.problem)
    return kind


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
