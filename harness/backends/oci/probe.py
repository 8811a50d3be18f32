"""What a runtime really made for a running container, read from the host's cgroupfs.

``describe()`` reports it rather than what we assume, on every host kind:

- **v1 and hybrid hosts**: which hierarchies hold the container's
  ``cvbench-oci/<shard>/<name>`` cgroup, and the device-cgroup rules the runtime wrote
  (``devices.list``);
- **v2 hosts**: the controllers the container's cgroup has (its ``cgroup.controllers``: what
  its parent enabled), and its device filter: the ``BPF_CGROUP_DEVICE`` programs attached to
  the cgroup (``BPF_PROG_QUERY``). A program cannot be read back as rules, so ``devices`` is
  then the rule list the runtime was given (the bundle's ``config.json``, in ``devices.list``
  form), and only where a program is attached to enforce it (None otherwise).

:func:`cgroup_limits` reads the memory, pids and cpu limits of any process's cgroup, v1 or v2,
from ``/proc/<pid>/cgroup``: the tests check each runtime's limits with it. Every function
takes the cgroup root (and ``/proc``) as parameters, so both paths are unit-tested on fake
trees.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.oci import cgroup
from runtime.cgroups import CGROUP_ROOT

PROC = Path("/proc")
UNIFIED = ""  # the hierarchy name of the v2 tree in /proc/<pid>/cgroup ("0::/path")


@dataclass(frozen=True)
class Observation:
    """One running container's cgroups as found on the host."""

    cgroup_controllers: tuple[str, ...]  # v1/hybrid: hierarchies; v2: the cgroup's controllers
    devices: tuple[str, ...] | None  # devices.list lines, sorted; None where there is none
    device_programs: tuple[int, ...] | None = None  # v2: ids of the device programs attached

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {
            "cgroup_controllers": list(self.cgroup_controllers),
            "devices": None if self.devices is None else list(self.devices)}
        if self.device_programs is not None:  # the shape ours' describe() gives it
            found["device_filter"] = {
                "programs": [{"type": "cgroup_device", "id": program,
                              "attach": "observed on the probe container's cgroup "
                                        "(BPF_PROG_QUERY, BPF_CGROUP_DEVICE)"}
                             for program in self.device_programs],
                "devices_from": "config.json, compiled into the attached program by the runtime"}
        return found


def observe(name: str, root: Path = CGROUP_ROOT, config: Path | None = None,
            programs: Callable[[Path], list[int]] | None = None) -> Observation:
    """The cgroup hierarchies (or v2 controllers) and device rules of container ``name``;
    ``config`` is its bundle's ``config.json`` (for the rules on v2), ``programs`` how device
    programs attached to a v2 cgroup directory are found (default: ``BPF_PROG_QUERY``)."""
    path = cgroup.path(name)
    unified = root / path / "cgroup.controllers"  # exists only where root is a v2 mount
    if unified.is_file():
        attached = tuple((programs or device_programs)(root / path))
        rules = configured_devices(config) if attached and config is not None else None
        return Observation(tuple(sorted(unified.read_text().split())), rules, attached)
    hierarchies = sorted(entry.name for entry in os.scandir(root)
                         if entry.is_dir(follow_symlinks=False)
                         and (root / entry.name / path).is_dir())
    return Observation(tuple(hierarchies), _device_rules(root / "devices" / path / "devices.list"))


def device_programs(directory: Path) -> list[int]:
    """Ids of the ``BPF_CGROUP_DEVICE`` programs attached to the cgroup v2 ``directory``
    itself (not those inherited from its ancestors)."""
    from runtime import device_filter

    return device_filter.attached(directory)


def configured_devices(config: Path) -> tuple[str, ...] | None:
    """The device rules of a bundle's ``config.json`` as the ``devices.list`` they leave
    (sorted lines, as :func:`observe` reports a v1 host's), or None if it has none."""
    from runtime import devices

    try:
        data: dict[str, Any] = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    entries = (data.get("linux") or {}).get("resources", {}).get("devices") or []
    listed = devices.v1_list([devices.DeviceRule.from_oci(entry) for entry in entries])
    return None if listed is None else tuple(sorted(listed))


def _device_rules(devices_list: Path) -> tuple[str, ...] | None:
    try:
        return tuple(sorted(line for line in devices_list.read_text().splitlines() if line))
    except OSError:
        return None


# -- a process's cgroups, v1 or v2 ----------------------------------------------------------


def process_cgroups(pid: int, proc: Path = PROC) -> dict[str, str]:
    """Hierarchy -> the cgroup ``pid`` is in there, from ``/proc/<pid>/cgroup``: each v1
    controller of a line (``4:cpu,cpuacct:/x`` gives ``cpu`` and ``cpuacct``), named ones
    without ``name=``, and ``""`` for the v2 tree (``0::/x``)."""
    found: dict[str, str] = {}
    for line in (proc / str(pid) / "cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [UNIFIED]:
            found[name.removeprefix("name=")] = path
    return found


@dataclass(frozen=True)
class CgroupLimits:
    """The limits on a process's cgroups (None: unlimited, ``max``)."""

    mode: str  # "v1" (the controllers' own hierarchies) or "v2" (the unified tree)
    memory_bytes: int | None
    pids: int | None
    cpu_quota_us: int | None
    cpu_period_us: int | None


def cgroup_limits(pid: int, root: Path = CGROUP_ROOT, proc: Path = PROC) -> CgroupLimits:
    """Memory, pids and cpu limits of the cgroups ``pid`` is in: from the v1 hierarchies
    where memory is a v1 controller (v1 and hybrid hosts), else from its v2 cgroup under
    ``root`` (the cgroup2 mount). LookupError if ``pid`` is in neither kind."""
    joined = process_cgroups(pid, proc)
    if "memory" in joined:
        def v1(controller: str, name: str) -> str:
            return (root / controller / joined[controller].lstrip("/") / name).read_text()

        return CgroupLimits("v1", _number(v1("memory", "memory.limit_in_bytes"),
                                          unlimited_from=1 << 62),
                            _number(v1("pids", "pids.max")),
                            _number(v1("cpu", "cpu.cfs_quota_us")),
                            _number(v1("cpu", "cpu.cfs_period_us")))
    directory = root / joined.get(UNIFIED, "").lstrip("/")
    if UNIFIED not in joined or not (directory / "cgroup.controllers").is_file():
        raise LookupError(f"pid {pid} is in no v1 memory cgroup and no v2 cgroup under {root}")
    quota, _, period = (directory / "cpu.max").read_text().partition(" ")
    return CgroupLimits("v2", _number((directory / "memory.max").read_text()),
                        _number((directory / "pids.max").read_text()), _number(quota),
                        _number(period))


def _number(text: str, unlimited_from: int | None = None) -> int | None:
    """A limit file's value: None for ``max``, ``-1`` (v1 cpu quota) or v1's huge "no limit"
    memory figure (at or above ``unlimited_from``)."""
    text = text.strip()
    if text in ("max", "-1", ""):
        return None
    value = int(text)
    return None if unlimited_from is not None and value >= unlimited_from else value
