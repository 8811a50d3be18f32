"""A snapshot of every host object a run can leave behind, to prove `cvbench clean` works.

Mounts, network and mount namespaces held by any process, network links, cgroups, libvirt
domains, processes and state directories: two snapshots taken before a run and after a
clean must be equal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


# The engines' own storage, not an object of cvbench's: Podman makes its overlay directory a
# private bind mount whenever a podman process finds it missing (set-up makes it up front;
# where Podman unmounts it on exit, the next `cvbench clean` makes it again).
ENGINE_MOUNTS = ("/var/lib/containers/storage/overlay",)


def _mounts() -> frozenset[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return frozenset(" ".join(line.split()[3:5]) for line in lines  # root and mount point
                     if line.split()[4] not in ENGINE_MOUNTS)


def _namespaces() -> frozenset[str]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            for kind in ("net", "mnt", "pid"):
                try:
                    found.add(os.readlink(f"/proc/{entry}/ns/{kind}"))
                except OSError:
                    pass
    return frozenset(found)


def _links() -> frozenset[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return frozenset(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())


def _cgroups() -> frozenset[str]:
    found = set()
    for top, directories, _ in os.walk(CGROUP_ROOT):  # errors (cgroups vanishing) are skipped
        found.update(os.path.join(top, d) for d in directories if "cvbench" in d)
    return frozenset(found)


def _domains() -> frozenset[str]:
    try:
        import libvirt

        connection = libvirt.open(os.environ.get("CVBENCH_LIBVIRT_URI", "qemu:///system"))
    except Exception:
        return frozenset()
    try:
        return frozenset(d.name() for d in connection.listAllDomains() if "cvbench" in d.name())
    finally:
        connection.close()


def _foreign_pid_namespace_processes() -> frozenset[int]:
    own = os.readlink("/proc/self/ns/pid")
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != own:
                    found.add(int(entry))
            except OSError:
                pass
    return frozenset(found)


def _state_entries(state_dir: Path) -> frozenset[str]:
    found = set()
    for kind in ("containers", "oci", "oci-state", "vms", "process"):
        directory = state_dir / kind
        if directory.is_dir():
            found.update(f"{kind}/{entry.name}" for entry in directory.iterdir())
    return frozenset(found)


@dataclass(frozen=True)
class Inventory:
    mounts: frozenset[str]
    namespaces: frozenset[str]
    links: frozenset[str]
    cgroups: frozenset[str]
    domains: frozenset[str]
    processes: frozenset[int]
    state: frozenset[str]

    @classmethod
    def take(cls, state_dir: Path) -> Inventory:
        return cls(_mounts(), _namespaces(), _links(), _cgroups(), _domains(),
                   _foreign_pid_namespace_processes(), _state_entries(state_dir))

    def leftovers(self, before: Inventory) -> dict[str, list]:
        """What this snapshot holds that ``before`` did not (empty when the host is clean)."""
        extra = {}
        for field in fields(self):
            added = getattr(self, field.name) - getattr(before, field.name)
            if added:
                extra[field.name] = sorted(added)[:10]
        return extra
