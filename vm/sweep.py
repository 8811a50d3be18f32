"""Clean-up after crashes: VMs (libvirt domains, bare QEMU processes) whose owner died, and
their directories under ``vms_dir()``.

A libvirt domain records its owner in ``<metadata>``; a bare QEMU VM in an ``owner`` link in
its directory, next to QEMU's pid file. Owners are checked in this host's /proc, so sweep
from the host that ran the benchmark.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import libvirt

from hostkit.paths import PREFIX
from vm import bare_qemu
from vm.hypervisor import (
    connect,
    default_uri,
    destroy,
    domain_owner,
    is_local,
    qemu_pid,
    remove_files,
    vms_dir,
)


def sweep(uri: str | None = None, prefix: str = PREFIX) -> list[str]:
    """Destroy every VM whose name starts with ``prefix`` and whose owner is dead, and remove
    its files.

    A VM whose recorded owner process still lives (same pid, same start time) is kept, files
    and all: it belongs to a run in progress. Domains without an owner (created before owners
    were recorded) count as dead.

    Never raises for an unreachable daemon: it says so in the returned descriptions and
    still removes files of VMs that cannot be running any more (no QEMU process left).
    """
    if not prefix.startswith(PREFIX):
        raise ValueError(f"sweep prefix must start with {PREFIX!r}")
    uri = uri or default_uri()
    done: list[str] = []
    active = _sweep_bare(prefix, done)  # names whose files stay: live owner, or QEMU running
    try:
        conn = connect(uri)
    except libvirt.libvirtError as error:
        done.append(f"libvirt at {uri} unreachable, domains not swept: "
                    f"{error.get_error_message()}")
        conn = None
    if conn is not None:
        try:
            for domain in conn.listAllDomains():
                name = domain.name()
                if not name.startswith(prefix):
                    continue
                owner = domain_owner(domain)
                if owner is not None and owner.alive():
                    active.add(name)
                    continue
                done += _sweep_domain(domain, name)
        finally:
            conn.close()
    elif is_local(uri):
        active |= {name for name in _dir_names(prefix) if qemu_pid(name) is not None}
    for name in _dir_names(prefix):
        if name not in active and remove_files(name):
            done.append(f"removed {vms_dir() / name}")
    return done


def _sweep_bare(prefix: str, done: list[str]) -> set[str]:
    """Kill bare QEMU VMs of dead owners; return the names of those whose owner lives."""
    alive = set()
    for name in _dir_names(prefix):
        directory = vms_dir() / name
        if not (directory / bare_qemu.OWNER_LINK).is_symlink():
            continue  # a libvirt VM's directory
        if bare_qemu.owner_alive(directory):
            alive.add(name)
            continue
        pid = _bare_pid(directory)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
                done.append(f"killed bare QEMU {name} (pid {pid})")
            except ProcessLookupError:
                pass
    return alive


def _bare_pid(directory: Path) -> int | None:
    """The pid QEMU wrote into the VM's directory, if that process still is this VM's QEMU."""
    try:
        pid = int((directory / bare_qemu.PID_FILE).read_text().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            ours = f"guest={directory.name},".encode() in handle.read()
    except (OSError, ValueError):
        return None
    return pid if ours else None


def _sweep_domain(domain: libvirt.virDomain, name: str) -> list[str]:
    """Destroy (and undefine, if persistent) one domain; one that vanished meanwhile is fine."""
    done = []
    try:
        persistent = domain.isPersistent()
        if domain.isActive():
            destroy(domain)
            done.append(f"destroyed domain {name}")
        if persistent:
            domain.undefine()
            done.append(f"undefined domain {name}")
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
    return done


def _dir_names(prefix: str) -> list[str]:
    root = vms_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.name.startswith(prefix))
