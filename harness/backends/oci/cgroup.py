"""The OCI containers' cgroups, read and removed through :mod:`runtime.cgroups`.

crun and runc make container ``<name>``'s cgroup at ``cvbench-oci/<name>`` in every mounted
hierarchy (here: each v1 controller, ``name=systemd`` and, for runc, the hybrid host's unified
tree), so the driver used for them covers every hierarchy, not only the three ``ours`` uses.
"""

from __future__ import annotations

from pathlib import Path

from hostkit.paths import PREFIX
from runtime import cgroups

PARENT = f"{PREFIX}oci"  # shared by every OCI container; a runtime makes it when it needs it


def path(name: str) -> str:
    """Container ``name``'s cgroup, as the driver names it."""
    return f"{PARENT}/{name}"


def cgroups_path(name: str) -> str:
    """``linux.cgroupsPath`` of container ``name``'s ``config.json``."""
    return f"/{path(name)}"


def host_mode() -> str:
    """``v2``, ``hybrid`` or ``v1`` (``unknown`` if no cgroup filesystem is mounted)."""
    try:
        return cgroups.detect_mode()
    except cgroups.CgroupError:
        return "unknown"


def driver(mode: str) -> cgroups.Driver:
    """The driver for the OCI containers' cgroups on a host in ``mode`` (see :func:`host_mode`)."""
    return cgroups.every_hierarchy("v2" if mode == "v2" else "v1")


def needs_private_view(binary: str, mode: str) -> bool:
    """crun 1.8 refuses hybrid hosts: it runs where ``/sys/fs/cgroup/unified`` is unmounted."""
    return Path(binary).name == "crun" and mode == "hybrid"
