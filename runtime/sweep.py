"""Clean-up after crashes: every container object whose owner process is dead.

``cvbench clean`` runs :func:`sweep_scopes` (the ``ours`` backend's sweeper in the registry)
and :func:`sweep_network` after every backend's; :func:`sweep_all` is both.
It reads what the runtime leaves on the host (container directories, state files, cgroup
scopes, address leases) without going through :class:`runtime.container.Runtime`.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from hostkit import mountinfo
from hostkit import syscalls as sc
from runtime import cgroups, network
from runtime.containerdir import owner_alive
from runtime.scopes import container_cgroup, registered_scopes, unregister_scope
from runtime.state import Container, load


def sweep_all() -> list[str]:
    """Remove every leftover container object whose owner process is dead.

    Covers this state directory and every other one registered in :mod:`runtime.scopes`
    (a test's private directory, say): processes (killed through their cgroup), cgroups
    under ``cvbench-<scope>``, veths and address leases, stray mounts under the state
    directory, container directories, and the ``cvbench0`` bridge if nothing uses it.
    Containers of live owners are never touched. Returns what was removed.
    """
    return sweep_scopes() + sweep_network()


def sweep_scopes() -> list[str]:
    """The containers part of :func:`sweep_all` (the ``ours`` backend's sweeper in the
    registry; ``cvbench clean`` runs :func:`sweep_network` once, after every backend's)."""
    removed: list[str] = []
    driver = cgroups.driver()
    for parent, directory in registered_scopes().items():
        removed.extend(_sweep_scope(driver, parent, directory))
    return removed


def sweep_network() -> list[str]:
    """Address leases whose owner directory is gone, then ``cvbench0`` if nothing uses it.

    The leases are shared by every backend on the bridge (crun and runc bundles, VM
    directories): ``cvbench clean`` runs this after every backend's sweeper, when the owners
    those sweepers removed are gone too."""
    removed: list[str] = []
    for address in network.stale_leases():
        network.release_address(address)
        removed.append(f"address lease {address}")
    try:
        if network.remove_bridge_if_unused():
            removed.append(f"bridge {network.BRIDGE}")
    except Exception as error:  # netlink unavailable: report, go on
        removed.append(f"(bridge not checked: {error})")
    return removed


def _sweep_scope(driver: cgroups.Driver, parent: str, state: Path) -> list[str]:
    removed: list[str] = []
    root = state / "containers"
    kept: set[str] = set()
    if root.is_dir():
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            directory = Path(entry.path)
            if owner_alive(directory):
                kept.add(entry.name)
                continue
            container = load(directory)
            path = container.cgroup if container is not None else container_cgroup(parent,
                                                                                 entry.name)
            removed.extend(_sweep_container(driver, path, container))
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(f"directory {directory}")
    for relative in driver.containers(parent):
        if relative.rsplit("/", 1)[-1] not in kept:
            removed.extend(_sweep_container(driver, f"{parent}/{relative}", None))
    if not kept and driver.remove_parent(parent):
        if removed:
            removed.append(f"cgroup parent {parent}")
        if not state.is_dir():  # its state directory is gone for good
            unregister_scope(parent)
    removed.extend(_sweep_mounts(state))
    return removed


def sweep_cgroup(driver: cgroups.Driver, path: str, timeout: float = 5.0) -> list[str]:
    """Kill what is left in a container's cgroup ``path`` and remove it; one line per thing
    done (nothing if it is gone). Ours' and the floor's sweepers both end a container so."""
    removed: list[str] = []
    if driver.exists(path):
        killed = driver.kill(path, timeout)
        if killed:
            removed.append(f"processes {' '.join(map(str, killed))} of {path}")
        try:
            driver.remove(path)
            removed.append(f"cgroup {path}")
        except cgroups.CgroupError as error:
            removed.append(f"(cgroup {path} not removed: {error})")
    return removed


def _sweep_container(driver: cgroups.Driver, path: str, container: Container | None) -> list[str]:
    removed = sweep_cgroup(driver, path)
    if container is not None and container.net is not None:
        try:
            if network.delete_link(container.net.veth):
                removed.append(f"veth {container.net.veth}")
        except Exception as error:  # netlink: report, go on
            removed.append(f"(veth {container.net.veth} not removed: {error})")
        network.release_address(container.net.address)
    return removed


def _sweep_mounts(state: Path) -> list[str]:
    """Unmount anything mounted under a state directory in the host's mount table."""
    base = os.path.realpath(state)
    removed = []
    for point in (p for p in mountinfo.points_under(base) if p != base):
        try:
            sc.umount2(point, sc.MNT_DETACH)
            removed.append(f"mount {point}")
        except OSError as error:
            if error.errno != errno.EINVAL:
                removed.append(f"(mount {point} not removed: {error})")
    return removed
