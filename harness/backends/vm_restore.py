"""The ``restore`` variant of the VM backends (``qemu``, ``libvirt``): a snapshot of a booted,
idle guest, made once per run and guest shape before any clock, and starts from it.

Before the clock (``create(spec, RESTORE)``): the first restore of a guest shape (memory,
vCPUs, accel) boots the guest with the console responder (:func:`vm.snapshot.restorable`),
waits for READY, lets it idle and saves it: bare QEMU through QMP ``migrate``
(:func:`vm.snapshot.save`), libvirt through ``virDomainSave``. The state file is made
read-only (0444) and only ever opened read-only afterwards, so every restore starts from the
same pristine state. The instance is then :class:`Staged`: nothing of it runs.

Inside the clock (``resume``): bare QEMU execs QEMU with ``-incoming defer`` and loads the file
(:func:`vm.snapshot.restore`); libvirt calls ``virDomainRestoreFlags`` (running). Then the host
pings the guest on its console, and READY is the restored guest's answer.

A restored guest keeps everything of the saved one: its memory, its devices' state, and for
libvirt its domain name and UUID (libvirt refuses another), so one restored instance of a
snapshot lives at a time; restore is a startup variant (the startup kind runs one instance per
turn). Hence :func:`harness.backends.restorable.guest_refusal`: a restore asks for
``network = "none"`` and no disk (two restores would share the saved guest's address and MAC,
and a disk's writable layer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import libvirt

from harness.backends.base import BackendError, Instance, InstanceSpec
from harness.backends.restorable import guest_refusal
from hostkit.files import sha256_of
from vm import bare_qemu, guest, hypervisor, snapshot
from vm.console import ConsoleError, SocketConsole
from vm.domain import DomainSpec
from vm.machine import VirtualMachine
from vm.snapshot import Snapshot, SnapshotError

CACHE_NOTE = ("the state file is read through the host's page cache, which is not dropped "
              "(after the first restore it is in memory)")


def _shape(spec: InstanceSpec) -> tuple[int, int, str]:
    return (spec.guest_memory_mib, spec.vcpus, spec.accel)


@dataclass(frozen=True)
class Staged:
    """A restore made ready before the clock: the snapshot it will start from."""

    snapshot: Snapshot


def staged(instance: Instance) -> bool:
    """True for an instance staged for a restore and not (or not successfully) restored."""
    return isinstance(instance.handle, Staged)


@dataclass
class Snapshots:
    """A backend's snapshots, one per guest shape, made on first use; removed by
    :meth:`close` (and by ``cvbench clean`` after a killed run: they are VM directories)."""

    made: dict[tuple[int, int, str], Snapshot] = field(default_factory=dict)
    directories: list[Path] = field(default_factory=list)

    def stage(self, spec: InstanceSpec, backend: str, save: Any) -> Instance:
        """``spec`` staged for a restore; ``save(directory)`` makes the snapshot if this
        shape has none yet (before the clock)."""
        refusal = guest_refusal(spec.network, spec.disk or spec.volume is not None)
        if refusal:
            raise BackendError(f"{spec.name}: {refusal}")
        key = _shape(spec)
        if key not in self.made:
            directory = snapshot.snapshot_dir(f"{spec.name}-snapshot")
            self.directories.append(directory)
            try:
                self.made[key] = save(directory)
            except (SnapshotError, OSError, guest.GuestError, ValueError) as error:
                raise BackendError(f"cannot make the snapshot to restore {spec.name} from: "
                                   f"{error}") from None
            except libvirt.libvirtError as error:
                raise BackendError(f"cannot make the snapshot to restore {spec.name} from: "
                                   f"{error.get_error_message()}") from None
        return Instance(name=spec.name, backend=backend, handle=Staged(self.made[key]))

    def describe(self) -> dict[str, Any]:
        return {str(path): {"bytes": shot.size, "sha256": shot.sha256}
                for path, shot in ((s.path, s) for s in self.made.values())}

    def close(self) -> None:
        for directory in self.directories:
            hypervisor.remove_files(directory.name)
        self.directories.clear()
        self.made.clear()


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


def qemu_save(domain: DomainSpec, directory: Path, binary: str) -> Snapshot:
    """Boot ``domain`` with the responder under bare QEMU and save it in ``directory``."""
    return snapshot.save(snapshot.restorable(replace(domain, name=f"{directory.name}-boot")),
                         directory, qemu=binary)


def qemu_restore(instance: Instance, binary: str, timeout: float = 60.0) -> None:
    """Inside the clock: start ``instance`` from its snapshot (BackendError, one line, if the
    state cannot be loaded); its handle becomes the restored :class:`BareVM`."""
    handle = instance.handle
    if not isinstance(handle, Staged):
        raise BackendError(f"{instance.name} is not staged for a restore")
    try:
        vm = snapshot.restore(handle.snapshot, instance.name, qemu=binary, timeout=timeout)
    except (SnapshotError, OSError, bare_qemu.BareQemuError) as error:
        raise BackendError(f"cannot restore VM {instance.name}: {error}") from None
    instance.handle = vm
    instance.pids = [vm.pid]


# --- libvirt -----------------------------------------------------------------------------


def libvirt_save(conn: libvirt.virConnect, domain: DomainSpec, directory: Path,
                 timeout: float = 120.0) -> Snapshot:
    """Boot ``domain`` with the responder as a libvirt domain and ``virDomainSave`` it into
    ``directory`` (the domain ends there)."""
    domain = snapshot.restorable(replace(domain, name=f"{directory.name}-boot"))
    path = directory / snapshot.STATE_FILE
    vm = VirtualMachine.start(conn, domain)
    try:
        vm.wait_ready(timeout)
        time.sleep(snapshot.IDLE_S)
        vm.domain.save(str(path))
    except (ConsoleError, libvirt.libvirtError) as error:
        path.unlink(missing_ok=True)
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
