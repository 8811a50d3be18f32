"""The ``restore`` variant of the VM backends (``qemu``, ``libvirt``): a snapshot of a booted,
idle guest, made once per run and guest shape before any clock, and starts from it.

Before the clock (``create(spec, RESTORE)``): the first restore of a guest shape (memory,
vCPUs, accel, network, disk) boots the guest with the console responder
(:func:`vm.snapshot.restorable`), waits for READY, lets it idle and saves it: bare QEMU through
QMP ``migrate`` (:func:`vm.snapshot.save`; the saved VM's directory, with its overlay disk as
it was, becomes the snapshot's), libvirt through ``virDomainSave``. The state file (and disk)
is made read-only and only ever opened read-only afterwards, so every restore starts from the
same pristine state. The instance is then :class:`Staged`: nothing of it runs; a guest with a
disk has its own copy of the saved overlay (:func:`vm.snapshot.stage_disks`).

Inside the clock (``resume``): bare QEMU opens the instance's own tap (with the saved MAC),
execs QEMU with ``-incoming defer`` and loads the file (:func:`vm.snapshot.restore`); libvirt
calls ``virDomainRestoreFlags`` (running). Then the host pings the guest on its console, and
READY is the restored guest's answer.

A restored guest keeps everything of the saved one: its memory, its devices' state, its
address on ``cvbench0`` and its MAC (the saved guest's lease is held until the end of the
run), and for libvirt its domain name and UUID (libvirt refuses another). So one restored
instance of a snapshot lives at a time: restore is a startup variant (the startup kind runs
one instance per turn; density and memory have no variants). libvirt's restore keeps the saved
domain's tap and disk paths, so there it takes ``network = "none"`` and no disk
(:func:`harness.backends.restorable.guest_refusal`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import libvirt

from harness.backends.base import BackendError, Instance, InstanceSpec
from harness.backends.guests import DISK_CACHE, GuestDevices, accel_for
from harness.backends.restorable import guest_refusal
from hostkit.files import sha256_of
from vm import bare_qemu, guest, hypervisor, snapshot
from vm.console import ConsoleError, SocketConsole
from vm.domain import DiskSpec, DomainSpec
from vm.machine import VirtualMachine
from vm.snapshot import Snapshot, SnapshotError

CACHE_NOTE = ("the state file is read through the host's page cache, which is not dropped "
              "(after the first restore it is in memory)")
MAPPED_CACHE_NOTE = ("the RAM file is read through the host's page cache, which is not "
                     "dropped (after the first restores the pages the guest touches are in "
                     "memory)")
DROPPED_NOTE = ("the snapshot's files are dropped from the host's page cache before each "
                "restore (written back, POSIX_FADV_DONTNEED), so each restore reads them from "
                "the disk")
KEPT, DROPPED = "kept", "dropped"  # the snapshot's files in the page cache at a restore
CACHE_KINDS = (KEPT, DROPPED)


def qemu_method(ram: str, cache: str = KEPT) -> tuple[str, str]:
    """What a bare-QEMU restore does before the clock and inside it, by how its snapshot
    holds the RAM (``vm.snapshot.STREAM`` or ``MAPPED``) and whether its files stay in the
    page cache (:data:`KEPT`) or are dropped before each restore (:data:`DROPPED`)."""
    mapped = ram == snapshot.MAPPED
    if cache == DROPPED:
        dropped = f"; before each restore: {DROPPED_NOTE}"
        note = DROPPED_NOTE
    else:
        dropped = ""
        note = MAPPED_CACHE_NOTE if mapped else CACHE_NOTE
    if mapped:
        return ("once per run and guest shape: the guest booted with a console responder and "
                "its RAM in a shared file, READY, idle 1 s, QMP stop and migrate with "
                "x-ignore-shared (the devices' state only) to a state file; both files made "
                "read-only; nothing of the instance" + dropped,
                "exec of QEMU with the saved guest's command line, its RAM the saved RAM file "
                "mapped private (copy-on-write: pages read as the guest touches them, the file "
                "never written), and -incoming defer, the state file handed over QMP (getfd, "
                "opened read-only), migrate-incoming, cont, a ping on the console; until the "
                "restored guest answers READY; " + note)
    return ("once per run and guest shape: the guest booted with a console responder, "
            "READY, idle 1 s, QMP stop and migrate to a state file (made read-only); "
            "nothing of the instance" + dropped, "exec of QEMU with the saved guest's command "
            "line and -incoming defer, the state file handed over QMP (getfd, opened "
            "read-only), migrate-incoming, cont, a ping on the console; until the "
            "restored guest answers READY; " + note)


def _shape(spec: InstanceSpec) -> tuple[int, int, str, str, bool]:
    return (spec.guest_memory_mib, spec.vcpus, spec.accel, spec.network, spec.disk)


@dataclass(frozen=True)
class Staged:
    """A restore made ready before the clock: the snapshot it starts from, and its own copy
    of the saved guest's writable disk (None: the guest has none)."""

    snapshot: Snapshot
    disks: tuple[DiskSpec, ...] | None = None


def staged(instance: Instance) -> bool:
    """True for an instance staged for a restore and not (or not successfully) restored."""
    return isinstance(instance.handle, Staged)


@dataclass
class Snapshots:
    """A backend's snapshots, one per guest shape, made on first use; removed by
    :meth:`close` (and by ``cvbench clean`` after a killed run: they are VM directories),
    with the address leases of the saved guests (:meth:`hold`)."""

    devices: bool = False  # restores get the saved guest's network and disk (bare QEMU)
    evict: bool = False  # drop the snapshot's files from the page cache before each restore
    made: dict[tuple[int, int, str, str, bool], Snapshot] = field(default_factory=dict)
    held: list[GuestDevices] = field(default_factory=list)

    def stage(self, spec: InstanceSpec, backend: str, save: Callable[[str], Snapshot]
              ) -> Instance:
        """``spec`` staged for a restore; ``save(name)`` makes the snapshot (a VM directory
        called ``name``) if this shape has none yet; before the clock."""
        refusal = guest_refusal(spec.network, spec.disk, devices=self.devices,
                                volume=spec.volume is not None)
        if refusal:
            raise BackendError(f"{spec.name}: {refusal}")
        key = _shape(spec)
        if key not in self.made:
            try:
                self.made[key] = save(f"{spec.name}-snapshot")
            except (SnapshotError, OSError, guest.GuestError, ValueError) as error:
                raise BackendError(f"cannot make the snapshot to restore {spec.name} from: "
                                   f"{error}") from None
            except libvirt.libvirtError as error:
                raise BackendError(f"cannot make the snapshot to restore {spec.name} from: "
                                   f"{error.get_error_message()}") from None
        shot = self.made[key]
        try:
            if self.evict:
                snapshot.evict(shot)
            disks = snapshot.stage_disks(shot, spec.name) if spec.disk else None
        except OSError as error:
            hypervisor.remove_files(spec.name)
            raise BackendError(f"cannot copy the saved disk for {spec.name}: {error}") from None
        return Instance(name=spec.name, backend=backend, handle=Staged(shot, disks))

    def hold(self, devices: GuestDevices) -> None:
        """Keep a saved guest's devices (its address lease) until :meth:`close`."""
        self.held.append(devices)

    def discard(self, instance: Instance) -> None:
        """What a staged, never restored instance holds: its disk copy."""
        handle = instance.handle
        if isinstance(handle, Staged) and handle.disks is not None:
            hypervisor.remove_files(instance.name)

    def close(self) -> None:
        for shot in self.made.values():
            hypervisor.remove_files(shot.path.parent.name)
        self.made.clear()
        for devices in self.held:
            devices.release()
        self.held.clear()


def one_line(message: str) -> str:
    """A message of several lines (libvirt quotes QEMU's log) as one: its first line and
    its last, without QEMU's timestamp."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) < 2:
        return lines[0] if lines else ""
    last = lines[-1]
    if last[:4].isdigit() and " " in last:  # "2026-12-06T21:42:25.259514Z qemu-system-..."
        last = last.split(" ", 1)[1]
    return f"{lines[0]} ... {last}"


# --- bare QEMU ---------------------------------------------------------------------------


def qemu_save(backend: Any, spec: InstanceSpec, name: str) -> Snapshot:
    """Boot ``spec`` as the VM ``name`` with the responder under ``backend``'s bare QEMU
    (its guest options, artifacts, accel and binary) and save it; its network lease is held
    by ``backend.snapshots`` until the end of the run (restores answer on its address)."""
    spec = replace(spec, name=name)
    devices = GuestDevices.for_spec(spec, own_tap=True)
    backend.snapshots.hold(devices)
    domain = backend.guest.domain(spec, accel_for(spec, backend.accel).accel,
                                  backend.artifacts.kernel(),
                                  backend.artifacts.boot_initrd(spec), devices)
    try:
        return snapshot.save(snapshot.restorable(domain), qemu=backend.binary,
                             disk_base=backend.artifacts.base_disk(spec)
                             if spec.disk else None,
                             disk_cache=DISK_CACHE if spec.disk else None,
                             ram=backend.restore_ram)
    finally:
        devices.handed_over()  # QEMU had its own copy of the tap; it has ended


def qemu_restore(instance: Instance, binary: str, timeout: float = 60.0) -> None:
    """Inside the clock: start ``instance`` from its snapshot, with its own tap (the saved
    MAC) where the saved guest had one (BackendError, one line, if the state cannot be
    loaded); its handle becomes the restored :class:`BareVM`."""
    handle = instance.handle
    if not isinstance(handle, Staged):
        raise BackendError(f"{instance.name} is not staged for a restore")
    fds: list[int] = []
    try:
        nics = []
        for nic in handle.snapshot.domain.nics:
            from runtime import network  # the containers' bridge, as harness.backends.guests

            tap = network.veth_name(f"tap:{instance.name}")
            fds.append(network.open_tap(tap))
            nics.append(replace(nic, tap=tap, fd=fds[-1]))
        vm = snapshot.restore(handle.snapshot, instance.name, qemu=binary, timeout=timeout,
                              disks=handle.disks, nics=tuple(nics))
    except (SnapshotError, OSError, bare_qemu.BareQemuError) as error:
        hypervisor.remove_files(instance.name)
        raise BackendError(f"cannot restore VM {instance.name}: {error}") from None
    except Exception as error:  # runtime.network.NetworkError
        hypervisor.remove_files(instance.name)
        raise BackendError(f"cannot restore VM {instance.name}: {error}") from None
    finally:
        for fd in fds:  # QEMU holds its own copy
            os.close(fd)
    instance.handle = vm
    instance.pids = [vm.pid]


# --- libvirt -----------------------------------------------------------------------------


def libvirt_save(conn: libvirt.virConnect, domain: DomainSpec, name: str,
                 timeout: float = 120.0) -> Snapshot:
    """Boot ``domain`` with the responder as a libvirt domain and ``virDomainSave`` it into
    the VM directory ``name`` (the domain ends there)."""
    directory = snapshot.snapshot_dir(name)
    domain = snapshot.restorable(replace(domain, name=f"{name}-boot"))
    path = directory / snapshot.STATE_FILE
    vm = VirtualMachine.start(conn, domain)
    try:
        vm.wait_ready(timeout)
        time.sleep(snapshot.IDLE_S)
        vm.domain.save(str(path))
    except (ConsoleError, libvirt.libvirtError) as error:
        hypervisor.remove_files(name)
        message = (error.get_error_message() if isinstance(error, libvirt.libvirtError)
                   else str(error))
        raise SnapshotError(f"saving {domain.name} failed: {message}") from None
    finally:
        vm.stop()
    path.chmod(0o444)
    return Snapshot(path, replace(vm.spec, console_socket=None), sha256_of(path),
                    path.stat().st_size)


def libvirt_restore(conn: libvirt.virConnect, instance: Instance,
                    timeout: float = 60.0) -> None:
    """Inside the clock: ``virDomainRestoreFlags`` (running) of ``instance``'s snapshot, then
    the ping; the domain keeps the saved name (libvirt insists), its console socket is in
    that name's VM directory again. The handle becomes the restored VM."""
    handle = instance.handle
    if not isinstance(handle, Staged):
        raise BackendError(f"{instance.name} is not staged for a restore")
    saved = handle.snapshot
    console: SocketConsole | None = None
    try:
        console = SocketConsole(hypervisor.vm_dir(saved.domain.name) / "console.sock")
        conn.restoreFlags(str(saved.path), None, libvirt.VIR_DOMAIN_SAVE_RUNNING)
        domain = conn.lookupByName(saved.domain.name)
    except (OSError, ValueError, ConsoleError, libvirt.libvirtError) as error:
        if console is not None:
            console.close()
        hypervisor.remove_files(saved.domain.name)
        message = (error.get_error_message() if isinstance(error, libvirt.libvirtError)
                   else str(error))
        raise BackendError(f"cannot restore VM {instance.name}: restore of {saved.path} "
                           f"failed: {one_line(message)}") from None
    vm = VirtualMachine(spec=replace(saved.domain, console_socket=console.path), domain=domain,
                        local=True, console=console,
                        pid=hypervisor.qemu_pid(saved.domain.name))
    instance.handle = vm
    instance.pids = [vm.pid] if vm.pid else []
    try:
        console.send(guest.PING + b"\n", timeout)
    except (OSError, ConsoleError) as error:
        raise BackendError(f"cannot ping restored VM {instance.name}: {error}") from None
