"""Saving a booted, idle guest to a file once, and starting guests from it (``restore``).

A guest made to be saved boots the image's initramfs with a console responder in front of
its ``/init`` (:func:`restorable`: :func:`vm.guest.restore_initramfs`, ``rdinit``): the
responder answers a ``cvbench-ping`` line from the host with ``READY``, so a restored guest
proves that it runs again (the ``READY`` of its boot lies before the snapshot).

Bare QEMU (:func:`save`, :func:`restore`): the guest boots, prints READY, idles
:data:`IDLE_S`; QMP ``stop``, then ``migrate`` to a descriptor of the state file handed over
the monitor socket (``getfd``; QEMU's sandbox denies the ``exec:`` transport its shell, and
QEMU 7.2 has no ``file:`` one). The file is then made read-only (0444). A restore execs QEMU
with the very machine, devices and kernel command line of the saved guest plus
``-incoming defer``, hands it the file opened read-only (``getfd``), ``migrate-incoming``,
waits for the MIGRATION event ``completed``, ``cont``, and sends the ping on the console.
QEMU reads the file through the host's page cache (:func:`evict` drops the snapshot's files
from it, for restores that read the disk). A corrupt file ends
in the event ``failed``: :class:`SnapshotError` with QEMU's own last line.

``mapped`` (Firecracker-style, :data:`MAPPED`): the saved guest's RAM is a file
(``guest.ram``, QEMU's ``memory-backend-file``, shared), and the save runs with QEMU's
``x-ignore-shared`` migration capability, so the state file holds the devices only and the RAM
is the file as the stopped guest left it. A restore maps that file privately (copy-on-write):
QEMU loads the device state, and the guest's pages are read from the file as it touches them;
the file is never written. Both files are made read-only.

The snapshot's directory is a VM directory (``vms_dir()/<name>/``) with an ``owner`` link,
so :func:`vm.sweep.sweep` removes what a killed harness left.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from hostkit.files import sha256_of
from vm import bare_qemu, guest, hypervisor
from vm.bare_qemu import BareVM
from vm.console import ConsoleError
from vm.domain import DiskSpec, DomainSpec, NicSpec, Owner
from vm.monitor import MonitorError

STATE_FILE = "guest.state"
MEMORY_FILE = "guest.ram"  # a mapped snapshot's RAM
STREAM, MAPPED = "stream", "mapped"  # how a snapshot holds the guest's RAM
RAM_KINDS = (STREAM, MAPPED)
IDLE_S = 1.0  # after READY, before the save: the guest settles into its idle loop
FD_NAME = "cvbench-state"
SAVE_BANDWIDTH = 1 << 40  # bytes/s: QEMU's default cap (32 MiB/s) would slow the save
EVENTS = {"capability": "events", "state": True}  # MIGRATION events on
IGNORE_SHARED = {"capability": "x-ignore-shared", "state": True}  # a mapped RAM: not streamed


class SnapshotError(Exception):
    """A guest could not be saved, or a restore failed; the message is one line."""


@dataclass(frozen=True)
class Snapshot:
    """A saved guest: its read-only state file and the domain it was booted from."""

    path: Path
    domain: DomainSpec  # the saved guest: restores use its machine, devices, cmdline
    sha256: str  # of the state file just after the save
    size: int  # bytes
    memory: Path | None = None  # a mapped snapshot's RAM file; None: the RAM is in the state


def restorable(domain: DomainSpec) -> DomainSpec:
    """``domain`` as a guest to be saved: the responder archive and ``rdinit``."""
    return replace(domain, initrd=guest.restore_initramfs(domain.initrd),
                   cmdline=f"{domain.cmdline} rdinit={guest.RESPONDER}")


def snapshot_dir(name: str) -> Path:
    """A VM directory owned by this process, for one snapshot's state file (libvirt's: a
    bare QEMU snapshot keeps the saved VM's own directory)."""
    directory = hypervisor.vm_dir(name)
    owner = Owner.current()
    link = directory / bare_qemu.OWNER_LINK
    if not link.is_symlink():
        os.symlink(f"{owner.pid}:{owner.start}", link)
    return directory


def _capabilities(memory: Path | None) -> dict[str, list[dict[str, object]]]:
    """The migration capabilities of a save or restore: events, and ignore-shared for a
    mapped RAM (the stream's RAM section then names the block and skips its pages)."""
    return {"capabilities": [EVENTS, *([IGNORE_SHARED] if memory is not None else [])]}


def save(domain: DomainSpec, *, qemu: str = bare_qemu.QEMU, disk_base: Path | None = None,
         disk_cache: str | None = None, idle_s: float = IDLE_S, ram: str = STREAM,
         timeout: float = 120.0) -> Snapshot:
    """Boot ``domain`` (already :func:`restorable`) with bare QEMU, wait for READY, idle,
    stop and save it to ``guest.state`` in its VM directory, which becomes the snapshot's
    (owner link and all): QEMU is ended, the directory kept, with the guest's overlay disk
    (``disk_base``) as it was at the save. State file and disk are made read-only.
    ``ram``: :data:`STREAM` (the RAM in the state file) or :data:`MAPPED` (in its own file)."""
    if ram not in RAM_KINDS:
        raise ValueError(f"ram must be one of {', '.join(RAM_KINDS)}, not {ram!r}")
    memory = hypervisor.vms_dir() / domain.name / MEMORY_FILE if ram == MAPPED else None
    domain = replace(domain, memory_file=memory, memory_shared=memory is not None)
    vm = BareVM.start(domain, qemu=qemu, disk_base=disk_base, disk_cache=disk_cache)
    path = vm.directory / STATE_FILE
    try:
        assert vm.monitor is not None and vm.console is not None
        vm.monitor.connect(timeout)
        vm.console.wait_for(timeout)
        time.sleep(idle_s)
        vm.monitor.execute("stop")
        vm.monitor.execute("migrate-set-parameters", {"max-bandwidth": SAVE_BANDWIDTH})
        vm.monitor.execute("migrate-set-capabilities", _capabilities(memory))
        with open(path, "wb") as state:
            vm.monitor.execute("getfd", {"fdname": FD_NAME}, fds=[state.fileno()])
        vm.monitor.execute("migrate", {"uri": f"fd:{FD_NAME}"})
        status = vm.monitor.wait_event("MIGRATION", _finished, timeout)["data"]["status"]
        if status != "completed":
            raise SnapshotError(f"saving {domain.name} failed: {_qemu_says(vm)}")
        vm.halt()
    except (MonitorError, ConsoleError, OSError) as error:
        vm.stop()
        raise SnapshotError(f"saving {domain.name} failed: {error}") from None
    except BaseException:
        vm.stop()
        raise
    for disk in _own_disks(vm.spec, vm.directory):
        disk.path.chmod(0o444)
    saved = replace(vm.spec, console_socket=None)
    shot = Snapshot(path, saved, sha256_of(path), path.stat().st_size, memory)
    for file in _files(shot):  # written back once, read-only from here on
        file.chmod(0o444)
    _each_fd(_files(shot), os.fsync)
    return shot


def _files(snapshot: Snapshot) -> list[Path]:
    """The snapshot's own files: its state, and a mapped snapshot's RAM."""
    return [path for path in (snapshot.path, snapshot.memory) if path is not None]


def _each_fd(paths: list[Path], action: Callable[[int], object]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            action(fd)
        finally:
            os.close(fd)


def evict(snapshot: Snapshot) -> None:
    """Drop the snapshot's files from the host's page cache, so that the next restore reads
    them from the disk: ``POSIX_FADV_DONTNEED`` over each whole file (written back once, at
    the save: clean pages only are dropped). Only these files' pages go; pages a running
    guest still maps stay (the kernel keeps mapped pages)."""
    _each_fd(_files(snapshot), lambda fd: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED))


def _own_disks(domain: DomainSpec, directory: Path) -> list[DiskSpec]:
    """The disks of ``domain`` that live in ``directory`` (its writable overlays)."""
    return [disk for disk in domain.disks if disk.path.parent == directory]


def stage_disks(snapshot: Snapshot, name: str) -> tuple[DiskSpec, ...]:
    """Before the clock: the saved guest's disks for a restore under ``name``, its own
    overlays copied (as they were at the save) into the VM directory of ``name``."""
    own = _own_disks(snapshot.domain, snapshot.path.parent)
    if not own:
        return snapshot.domain.disks
    directory = hypervisor.vms_dir() / name
    directory.mkdir(parents=True, exist_ok=True)
    disks = []
    for disk in snapshot.domain.disks:
        if disk in own:
            copy = directory / disk.path.name
            shutil.copyfile(disk.path, copy)
            copy.chmod(0o644)
            disk = replace(disk, path=copy)
        disks.append(disk)
    return tuple(disks)


def restore(snapshot: Snapshot, name: str, *, qemu: str = bare_qemu.QEMU,
            disks: tuple[DiskSpec, ...] | None = None, nics: tuple[NicSpec, ...] = (),
            timeout: float = 60.0) -> BareVM:
    """Start a guest from ``snapshot`` under ``name``: exec QEMU with the saved guest's
    command line and ``-incoming defer``, load the state, ``cont``, ping the guest. Returns
    once the ping is sent; :meth:`BareVM.wait_ready` waits for the answer. ``disks``: the
    restore's own copies (:func:`stage_disks`); ``nics``: its taps, with the saved MACs."""
    domain = replace(snapshot.domain, name=name,
                     disks=snapshot.domain.disks if disks is None else disks, nics=nics,
                     memory_file=snapshot.memory, memory_shared=False)
    vm = BareVM.start(domain, qemu=qemu, extra=("-incoming", "defer"))
    try:
        assert vm.monitor is not None and vm.console is not None
        vm.monitor.connect(timeout)
        with open(snapshot.path, "rb") as state:
            vm.monitor.execute("getfd", {"fdname": FD_NAME}, fds=[state.fileno()])
        vm.monitor.execute("migrate-set-capabilities", _capabilities(snapshot.memory))
        vm.monitor.execute("migrate-incoming", {"uri": f"fd:{FD_NAME}"})
        status = vm.monitor.wait_event("MIGRATION", _finished, timeout)["data"]["status"]
        if status != "completed":
            raise SnapshotError(f"restore of {snapshot.path} failed: {_qemu_says(vm)}")
        vm.monitor.execute("cont")
        vm.console.send(guest.PING + b"\n", timeout)
    except (MonitorError, ConsoleError, OSError) as error:
        vm.stop()
        raise SnapshotError(f"restore of {snapshot.path} failed: {error}; "
                            f"QEMU said: {_qemu_says(vm)}") from None
    except BaseException:
        vm.stop()
        raise
    return vm


def _finished(data: dict[str, object]) -> bool:
    return data.get("status") in ("completed", "failed", "cancelled")


def _qemu_says(vm: BareVM) -> str:
    """QEMU's last line on stderr (it names what in the state it could not load), without
    its timestamp prefix."""
    return vm._stderr_tail().split(" ", 1)[-1] if vm._stderr_tail().startswith("20") \
        else vm._stderr_tail()
