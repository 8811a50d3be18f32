"""The ``qemu`` backend: the VM floor. A bare ``qemu-system-x86_64`` boots the guest the
``libvirt`` backend boots (same kernel, initramfs, memory, machine type and command line:
:mod:`harness.backends.guests`), started and stopped by the harness itself, so that a
libvirt/QEMU ratio shows what libvirt adds.

The ``microvm`` backend is the same bare QEMU on QEMU's microVM machine (:class:`MicrovmBackend`):
no PCI bus, the virtio devices on virtio-mmio, qboot as firmware, the same kernel, image and
command line otherwise, so a microvm/qemu ratio shows what the machine type costs.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import psutil

from harness.backends import launch as launches
from harness.backends import vm_restore
from harness.backends.base import (
    COLD,
    RESTORE,
    WARM,
    BackendError,
    Instance,
    InstanceSpec,
    MemorySample,
    Method,
    NotReady,
)
from harness.backends.chores import Chores
from harness.backends.guests import (
    DISK_CACHE,
    IMPORTED_GUEST,
    GuestArtifacts,
    GuestDevices,
    GuestOptions,
    accel_for,
    booted,
    console_reason,
    memory_sample,
    wait_console_rule,
)
from harness.backends.ready_rule import EXIT, LINE, TCP
from hostkit.paths import PREFIX
from imagestore.image import Image
from vm import bare_qemu, guest, snapshot
from vm.accel import detect_accel
from vm.console import ConsoleError
from vm.domain import MICROVM


class QemuBackend(Chores):
    """Bare QEMU processes with the libvirt domain's command line; READY on the serial socket."""

    name = "qemu"
    # a line of the rule's own on the serial console, where the guest's init writes the
    # workload's output; exit: the guest kernel's report on that console that its PID 1 (the
    # image's /init) exited, with its status (guests.wait_guest_exit); tcp: a connection from
    # the host to the guest's address on cvbench0 (the disk boot configures eth0 from
    # CVBENCH_IP)
    ready_kinds = (LINE, EXIT, TCP)
    variants = (COLD, WARM, RESTORE)
    # an imported image: booted from its disk, its init execs the image's process in its
    # workdir as its user (harness.backends.guests, vm.guest); no restore (the runner refuses)
    launch_fields = launches.FIELDS
    restores_devices = True  # a restore gets its own tap and disk copy (vm_restore)
    own_machine = False  # whether the machine type is the backend's point (harness.runner)
    _command = "the libvirt domain's command line"  # what its QEMU command is, in describe()

    def __init__(self, *, accel: str = "auto", machine: str = "pc",
                 tb_cache_mib: int | None = None, balloon: bool = False,
                 cmdline_extra: str = "", acpi: bool = False, binary: str = bare_qemu.QEMU,
                 grace_s: float = bare_qemu.GRACE_S,
                 restore_ram: str = snapshot.STREAM,
                 restore_cache: str = vm_restore.KEPT) -> None:
        super().__init__()
        for option, value, accepted in (("restore_ram", restore_ram, snapshot.RAM_KINDS),
                                        ("restore_cache", restore_cache,
                                         vm_restore.CACHE_KINDS)):
            if value not in accepted:
                raise BackendError(f"{self.name}: {option} must be one of "
                                   f"{', '.join(accepted)}, not {value!r}")
        self.restore_ram = restore_ram  # how a snapshot holds the RAM: vm.snapshot
        self.restore_cache = restore_cache  # its files in the page cache at a restore
        self.accel = detect_accel(accel)
        self.guest = GuestOptions(machine, tb_cache_mib, balloon, cmdline_extra, acpi)
        self.binary = binary
        self.grace_s = grace_s
        self.artifacts = GuestArtifacts()
        self.devices: dict[str, GuestDevices] = {}  # network lease, tap: until removed
        self.snapshots = vm_restore.Snapshots(devices=self.restores_devices,  # one per shape
                                              evict=restore_cache == vm_restore.DROPPED)

    def _check_machine(self) -> None:
        """BackendError if this QEMU lacks the machine type asked for."""
        machine = self.guest.machine.split(",", 1)[0]
        if machine not in bare_qemu.machine_types(self.binary):
            raise BackendError(f"{self.name}: {self.binary} has no {machine!r} machine "
                               f"({self.binary} -machine help does not list it)")

    def _vm(self, instance: Instance) -> bare_qemu.BareVM:
        vm = instance.handle
        if not isinstance(vm, bare_qemu.BareVM):
            raise BackendError(f"{instance.name} is not a qemu instance")
        return vm

    def prepare(self, image: Image) -> None:
        if shutil.which(self.binary) is None:
            raise BackendError(f"{self.binary} not found on PATH (apt-get install "
                               "qemu-system-x86, or run scripts/setup.sh)")
        self._check_machine()
        self.artifacts.check(image)

    def _launch(self, spec: InstanceSpec, variant: str) -> Instance:
        """Warm: QEMU started with ``-S``: kernel and initramfs loaded, CPUs stopped.
        Restore: the snapshot made (once), nothing started (:mod:`~harness.backends.vm_restore`)."""
        if variant == RESTORE:
            return self.snapshots.stage(spec, self.name,
                                        lambda name: vm_restore.qemu_save(self, spec, name))
        paused = variant == WARM
        instance = self._start_qemu(spec, paused)
        if paused:
            try:
                self._vm(instance).wait_paused()
            except bare_qemu.BareQemuError as error:
                self._discard(instance)
                raise BackendError(f"cannot prepare VM {instance.name}: {error}") from None
        return instance

    def resume(self, instance: Instance) -> None:
        if vm_restore.staged(instance):
            vm_restore.qemu_restore(instance, self.binary)
            return
        try:
            self._vm(instance).resume()
        except (OSError, bare_qemu.BareQemuError) as error:
            raise BackendError(f"cannot resume VM {instance.name}: {error}") from None

    def _start_qemu(self, spec: InstanceSpec, paused: bool) -> Instance:
        if not spec.name.startswith(PREFIX):
            raise BackendError(f"instance names start with {PREFIX!r}, not {spec.name!r}")
        spec = booted(spec)
        accel = accel_for(spec, self.accel)
        devices = GuestDevices.for_spec(spec, own_tap=True)
        try:
            initrd = self.artifacts.boot_initrd(spec, self.guest.virtio_transport)
            domain = self.guest.domain(spec, accel.accel, self.artifacts.kernel(), initrd,
                                       devices)
            vm = bare_qemu.BareVM.start(
                domain, qemu=self.binary, paused=paused,
                disk_base=self.artifacts.base_disk(spec) if spec.disk else None,
                disk_cache=DISK_CACHE if spec.disk else None)
        except (OSError, guest.GuestError, ValueError) as error:
            devices.release()
            raise BackendError(f"cannot start VM {spec.name}: {error}") from None
        except BaseException:
            devices.release()
            raise
        devices.handed_over()
        self.devices[spec.name] = devices
        return Instance(name=spec.name, backend=self.name, handle=vm, pids=[vm.pid])

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        """The rule's line on the serial console; or (``tcp``) a connection from the host to
        the guest's leased address on cvbench0, the console drained meanwhile (a boot
        failure's ``cvbench-boot:`` line, or QEMU's exit, ends the wait)."""
        if instance.ready.kind in (EXIT, TCP):
            wait_console_rule(self._vm(instance), instance, self.devices.get(instance.name),
                              timeout)
            return
        try:
            self._vm(instance).wait_ready(timeout, instance.ready.marker)
        except (ConsoleError, bare_qemu.BareQemuError) as error:
            reason = console_reason(getattr(error, "output", b""))
            last = f"; last console line: {reason!r}" if reason else ""
            raise NotReady(f"VM {instance.name}: {error}{last}") from None

    def stop(self, instance: Instance) -> None:
        if not vm_restore.staged(instance):  # a staged restore runs nothing
            self._vm(instance).halt(self.grace_s)

    def _remove(self, instance: Instance) -> None:
        if vm_restore.staged(instance):
            self.snapshots.discard(instance)
            return
        try:
            self._vm(instance).release()
        finally:
            devices = self.devices.pop(instance.name, None)
            if devices is not None:
                devices.release()

    def memory(self, instance: Instance) -> MemorySample:
        try:
            return memory_sample(self._vm(instance).memory())
        except psutil.Error as error:
            raise BackendError(f"cannot measure VM {instance.name}: {error}") from None

    def _close(self) -> None:
        for devices in self.devices.values():
            devices.release()
        self.devices.clear()
        GuestDevices.done_with_bridge()
        self.snapshots.close()

    def describe(self) -> dict[str, Any]:
        try:
            out = subprocess.run([self.binary, "--version"], capture_output=True, text=True,
                                 check=False).stdout
            version = out.split("version", 1)[1].split()[0] if "version" in out else None
        except OSError:
            version = None
        method = Method(
            cold=("nothing", f"exec of qemu-system-x86_64 ({self._command})"),
            warm=("QEMU started with -S: guest kernel and initramfs loaded, CPUs stopped",
                  "QMP cont on QEMU's monitor socket"),
            restore=vm_restore.qemu_method(self.restore_ram, self.restore_cache),
            stop="SIGTERM (SIGKILL after a grace time); until QEMU exited (pidfd) and was "
                 "reaped",
            remove="the VM's directory (sockets, pid file)",
        )
        return {"hypervisor": "qemu", "manager": "none (bare process)", **self.accel.as_dict(),
                "guest": self.guest.describe(), "qemu_version": version,
                "guest_kernel": self.artifacts.kernel_package(), "method": method.as_dict(),
                "restore_ram": self.restore_ram, "restore_cache": self.restore_cache,
                "imported_image": IMPORTED_GUEST,
                **({"own_machine": True} if self.own_machine else {}),
                **({"machine_cmdline": extra} if (extra := self.guest.machine_cmdline(
                    self.accel.accel)) else {})}


class MicrovmBackend(QemuBackend):
    """The ``qemu`` backend's bare QEMU on the microVM machine: virtio-mmio, no PCI, qboot.

    Its ACPI tables are on: Debian's cloud kernel has no MP-table parser
    (``CONFIG_X86_MPPARSE``), so without them the guest finds no local APIC or I/O APIC and
    its serial port's interrupts never arrive (the kernel boots, user space's output stalls);
    they also describe the virtio-mmio transports, which the disk boot's ``virtio_mmio``
    module then finds. The machine's own serial port is off: the console is the same
    ``isa-serial`` device on the same socket as ``qemu``'s.
    """

    name = "microvm"
    own_machine = True
    _command = "the qemu backend's command line on -machine microvm, virtio-mmio devices"

    def __init__(self, *, accel: str = "auto", tb_cache_mib: int | None = None,
                 balloon: bool = False, cmdline_extra: str = "",
                 binary: str = bare_qemu.QEMU, grace_s: float = bare_qemu.GRACE_S,
                 restore_ram: str = snapshot.STREAM,
                 restore_cache: str = vm_restore.KEPT) -> None:
        super().__init__(accel=accel, machine=MICROVM, tb_cache_mib=tb_cache_mib,
                         balloon=balloon, cmdline_extra=cmdline_extra, acpi=True,
                         binary=binary, grace_s=grace_s, restore_ram=restore_ram,
                         restore_cache=restore_cache)
