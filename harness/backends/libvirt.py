"""The ``libvirt`` backend: each instance is a transient QEMU VM booting the image's initramfs.

Adapts :mod:`vm` to the :class:`~harness.backends.base.Backend` protocol. The connection URI
is ``qemu:///system`` unless ``CVBENCH_LIBVIRT_URI`` or the ``uri`` option says otherwise
(``qemu+ssh://host/system`` works the same way; see docs/remote-hosts.md). The guest is the
one the ``qemu`` floor boots (:mod:`harness.backends.guests`); each start records libvirt's
own work, the ``createXML`` call, as the phase ``createxml_s``.
"""

from __future__ import annotations

from typing import Any

import libvirt
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
    booted,
    console_reason,
    memory_sample,
    wait_console_rule,
)
from harness.backends.ready_rule import EXIT, LINE, TCP
from hostkit.paths import PREFIX
from imagestore.image import Image
from vm import guest, hypervisor
from vm.accel import detect_accel
from vm.console import ConsoleError
from vm.machine import VirtualMachine

# The rules that read the console socket or the host's bridge, on a remote hypervisor.
REMOTE_REFUSAL = {
    EXIT: "the exit rule reads the console socket of a local hypervisor (a remote one's "
          "console is a stream)",
    TCP: "the tcp rule needs a local hypervisor (the guest's bridge is on the host libvirtd "
         "runs on)",
}


class LibvirtBackend(Chores):
    """Transient libvirt domains, direct kernel boot, READY read from the serial console."""

    name = "libvirt"
    # line, exit and tcp as qemu's (exit and tcp on a local hypervisor only: they read the
    # console socket, and the guest's bridge is on the host libvirtd runs on)
    ready_kinds = (LINE, EXIT, TCP)
    launch_fields = launches.FIELDS  # an imported image: as qemu's (harness.backends.guests)

    def __init__(self, *, uri: str | None = None, accel: str = "auto", machine: str = "pc",
                 tb_cache_mib: int | None = None, balloon: bool = False,
                 cmdline_extra: str = "", acpi: bool = False, autodestroy: bool = True,
                 console: str = "auto") -> None:
        super().__init__()
        self.uri = uri or hypervisor.default_uri()
        self.accel_force = accel
        self.accel = detect_accel(accel)  # remote hosts: redone in prepare()
        self.guest = GuestOptions(machine, tb_cache_mib, balloon, cmdline_extra, acpi)
        self.autodestroy = autodestroy
        self.console = console
        self.artifacts = GuestArtifacts()
        self._conn: libvirt.virConnect | None = None
        self.devices: dict[str, GuestDevices] = {}  # network lease: until removed
        self.snapshots = vm_restore.Snapshots()  # restore: one per guest shape, made once
        # restore needs the socket console and the state file on this host
        self.variants = (COLD, WARM, RESTORE) if hypervisor.is_local(self.uri) else (COLD, WARM)

    # -- helpers ----------------------------------------------------------------------------

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None:
            try:
                self._conn = hypervisor.connect(self.uri)
            except libvirt.libvirtError as error:
                raise BackendError(f"cannot connect to libvirt at {self.uri}: "
                                   f"{error.get_error_message()}") from None
        return self._conn

    def _vm(self, instance: Instance) -> VirtualMachine:
        vm = instance.handle
        if not isinstance(vm, VirtualMachine):
            raise BackendError(f"{instance.name} is not a libvirt instance")
        return vm

    # -- protocol ---------------------------------------------------------------------------

    def prepare(self, image: Image) -> None:
        self.artifacts.check(image)
        if not hypervisor.is_local(self.uri):
            try:
                self.accel = hypervisor.detect_accel_for(self.conn, self.accel_force)
            except libvirt.libvirtError as error:
                raise BackendError(f"cannot read capabilities of {self.uri}: "
                                   f"{error.get_error_message()}") from None
        self.conn  # noqa: B018 - fail early if libvirtd is not there

    def resume(self, instance: Instance) -> None:
        if vm_restore.staged(instance):
            vm_restore.libvirt_restore(self.conn, instance)
            return
        try:
            self._vm(instance).resume()
        except libvirt.libvirtError as error:
            raise BackendError(f"cannot resume VM {instance.name}: "
                               f"{error.get_error_message()}") from None

    def _launch(self, spec: InstanceSpec, variant: str) -> Instance:
        """Warm: a domain created paused: QEMU running, kernel and initramfs loaded, CPUs
        stopped. Restore: the snapshot made (once), nothing started."""
        if not spec.name.startswith(PREFIX):
            raise BackendError(f"instance names start with {PREFIX!r}, not {spec.name!r}")
        accel = self.accel
        if spec.accel != "auto":  # the scenario forces one
            accel = hypervisor.detect_accel_for(self.conn, spec.accel)
        if variant == RESTORE:
            return self.snapshots.stage(spec, self.name, lambda name: vm_restore.libvirt_save(
                self.conn, self.guest.domain(spec, accel.accel, self.artifacts.kernel(),
                                             self.artifacts.initrd(spec.image)), name))
        spec = booted(spec)
        devices = GuestDevices.for_spec(spec, own_tap=False)
        try:
            initrd = self.artifacts.boot_initrd(spec, self.guest.virtio_transport)
            domain = self.guest.domain(spec, accel.accel, self.artifacts.kernel(), initrd,
                                       devices)
            vm = VirtualMachine.start(
                self.conn, domain, autodestroy=self.autodestroy, console=self.console,
                disk_base=self.artifacts.base_disk(spec) if spec.disk else None,
                paused=variant == WARM, disk_cache=DISK_CACHE if spec.disk else None,
            )
        except (libvirt.libvirtError, guest.GuestError, ValueError) as error:
            devices.release()
            message = (error.get_error_message() if isinstance(error, libvirt.libvirtError)
                       else str(error))
            raise BackendError(f"cannot start VM {spec.name}: {message}") from None
        except BaseException:
            devices.release()
            raise
        self.devices[spec.name] = devices
        return Instance(name=spec.name, backend=self.name, handle=vm,
                        pids=[vm.pid] if vm.pid else [], phases={"createxml_s": vm.create_s})

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        """The rule's line on the serial console; or (``tcp``) a connection from the host to
        the guest's leased address on cvbench0, the console drained meanwhile."""
        if instance.ready.kind in (EXIT, TCP):
            vm = self._vm(instance)
            if not vm.local:
                raise NotReady(f"VM {instance.name}: {REMOTE_REFUSAL[instance.ready.kind]}")
            wait_console_rule(vm, instance, self.devices.get(instance.name), timeout)
            return
        try:
            self._vm(instance).wait_ready(timeout, instance.ready.marker)
        except ConsoleError as error:
            reason = console_reason(error.output)
            last = f"; last console line: {reason!r}" if reason else ""
            raise NotReady(f"VM {instance.name}: {error}{last}") from None

    def stop(self, instance: Instance) -> None:
        if vm_restore.staged(instance):  # a staged restore runs nothing
            return
        try:
            self._vm(instance).halt()
        except libvirt.libvirtError as error:
            raise BackendError(f"cannot destroy VM {instance.name}: "
                               f"{error.get_error_message()}") from None

    def _remove(self, instance: Instance) -> None:
        if vm_restore.staged(instance):
            return
        try:
            self._vm(instance).release()
        except libvirt.libvirtError as error:
            raise BackendError(f"cannot destroy VM {instance.name}: "
                               f"{error.get_error_message()}") from None
        finally:
            devices = self.devices.pop(instance.name, None)
            if devices is not None:
                devices.release()

    def memory(self, instance: Instance) -> MemorySample:
        vm = self._vm(instance)
        try:
            return memory_sample(vm.memory())
        except (psutil.Error, libvirt.libvirtError) as error:
            raise BackendError(f"cannot measure VM {instance.name}: {error}") from None

    def _close(self) -> None:
        for devices in self.devices.values():
            devices.release()
        self.devices.clear()
        GuestDevices.done_with_bridge()
        self.snapshots.close()
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None

    def describe(self) -> dict[str, Any]:
        method = Method(
            cold=("nothing (libvirtd runs)", "domain XML, createXML (libvirt starts QEMU)"),
            warm=("createXML with START_PAUSED: QEMU running, kernel loaded, CPUs stopped",
                  "virDomainResume"),
            restore=("once per run and guest shape: the guest booted with a console responder, "
                     "READY, idle 1 s, virDomainSave to a state file (made read-only); nothing "
                     "of the instance", "virDomainRestoreFlags (running; the domain keeps the "
                     "saved name and UUID), a ping on the console; until the restored guest "
                     "answers READY; " + vm_restore.CACHE_NOTE),
            stop="virDomainDestroy; until QEMU exited (pidfd on its pid)",
            remove="the rest of virDomainDestroy (libvirt polls for the process every 200 ms, "
                   "then cleans up), the VM's directory",
        )
        facts: dict[str, Any] = {"hypervisor": "qemu", "manager": "libvirt", "uri": self.uri,
                                 **self.accel.as_dict(), "guest": self.guest.describe(),
                                 "console": self.console, "method": method.as_dict(),
                                 "imported_image": IMPORTED_GUEST}
        try:
            facts.update(hypervisor.versions(self.conn))
        except (BackendError, libvirt.libvirtError):
            facts.update(libvirt_version=None, qemu_version=None)
        facts["guest_kernel"] = self.artifacts.kernel_package()
        return facts
