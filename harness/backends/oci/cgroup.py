"""The OCI containers' cgroups, read and removed through :mod:`runtime.cgroups`.

crun and runc make container ``<name>``'s cgroup at ``cvbench-oci/<shard>/<name>`` in every
mounted hierarchy (on a v1 or hybrid host each v1 controller and named hierarchy such as
``name=systemd`` and, for runc, a hybrid host's unified tree; on a v2 host the one unified
tree), so the driver used for them covers every hierarchy, not only the ones ``ours`` uses.

The layout is the harness's choice, not the runtimes' (they make whatever
``linux.cgroupsPath`` names), and the same as ours' (:func:`runtime.scopes.container_cgroup`:
16 shards under the parent): ``OciBackend.prepare`` makes :data:`PARENT` and all its shards
with the settings ours' get (:meth:`runtime.cgroups.Driver.prepare_layout`) on every host kind,
before the first start. On v1 and hybrid hosts that is ``cgroup.clone_children`` in the cpuset
hierarchy, so the kernel gives each new container cgroup its parent's CPUs and memory nodes:
runc, which copies them only into an empty cpuset, writes none, as ours; crun writes back the
values it read, unchanged, which the kernel takes as no change (no sibling check, no
sched-domain rebuild; :mod:`runtime.cgroups`).

Both runtimes use one cgroup manager, on every host kind and init system: **cgroupfs**
(:data:`MANAGER`), the one ``ours`` is too: the runtime writes the cgroup directories itself
at ``linux.cgroupsPath``; with systemd (crun's ``--cgroup-manager=systemd``, runc's
``--systemd-cgroup``) it would ask systemd for a transient scope over D-Bus instead, which
costs a round trip per start that ``ours`` does not make and a host without systemd cannot
offer. It is passed explicitly (:func:`manager_args`: crun ``--cgroup-manager=cgroupfs``;
runc's cgroupfs is the absence of ``--systemd-cgroup``) and recorded by ``describe()``.
"""

from __future__ import annotations

from hostkit.paths import PREFIX
from runtime import cgroups, scopes

PARENT = f"{PREFIX}oci"  # shared by every OCI container; made with its shards in prepare()
MANAGER = "cgroupfs"


def path(name: str) -> str:
    """Container ``name``'s cgroup, as the driver names it: ``cvbench-oci/<shard>/<name>``."""
    return scopes.container_cgroup(PARENT, name)


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


def manager_args(flavor: str) -> list[str]:
    """The global options that select :data:`MANAGER` for a runtime of ``flavor`` (``crun`` or
    ``runc``: :func:`harness.backends.oci.runtimes.flavor`), before its command: crun takes
    ``--cgroup-manager``; runc (and youki, runsc) use cgroupfs unless given
    ``--systemd-cgroup``, so they get nothing."""
    return [f"--cgroup-manager={MANAGER}"] if flavor == "crun" else []


def needs_private_view(flavor: str, mode: str) -> bool:
    """crun 1.8 refuses hybrid hosts: it runs where ``/sys/fs/cgroup/unified`` is unmounted.
    On v1 and v2 hosts it runs as it is (no private view, nothing unmounted); runtimes of
    runc's ``flavor`` never need it."""
    return flavor == "crun" and mode == "hybrid"
