"""What a runtime really made for a running container, read from the host's cgroupfs.

``describe()`` reports it rather than what we assume: which hierarchies hold the container's
``cvbench-oci/<name>`` cgroup, and which device-cgroup rules the runtime wrote (v1
``devices.list``; on cgroup v2 device rules are an eBPF program with nothing to read).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.backends.oci import cgroup
from runtime.cgroups import CGROUP_ROOT


@dataclass(frozen=True)
class Observation:
    """One running container's cgroups as found on the host."""

    cgroup_controllers: tuple[str, ...]  # v1/hybrid: hierarchies; v2: enabled controllers
    devices: tuple[str, ...] | None  # devices.list lines, sorted; None where there is none

    def as_dict(self) -> dict[str, object]:
        return {"cgroup_controllers": list(self.cgroup_controllers),
                "devices": None if self.devices is None else list(self.devices)}


def observe(name: str, root: Path = CGROUP_ROOT) -> Observation:
    """The cgroup hierarchies (or v2 controllers) and device rules of container ``name``."""
    path = cgroup.path(name)
    unified = root / path / "cgroup.controllers"  # exists only where root is a v2 mount
    if unified.is_file():
        return Observation(tuple(sorted(unified.read_text().split())), None)
    hierarchies = sorted(entry.name for entry in os.scandir(root)
                         if entry.is_dir(follow_symlinks=False)
                         and (root / entry.name / path).is_dir())
    return Observation(tuple(hierarchies), _device_rules(root / "devices" / path / "devices.list"))


def _device_rules(devices_list: Path) -> tuple[str, ...] | None:
    try:
        return tuple(sorted(line for line in devices_list.read_text().splitlines() if line))
    except OSError:
        return None
