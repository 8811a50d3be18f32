"""The ``libvirt`` backend: each instance is a transient QEMU VM booting the image's initramfs.

Adapts :mod:`vm` to the :class:`~harness.backends.base.Backend` protocol. The connection URI
is ``qemu:///system`` unless ``CVBENCH_LIBVIRT_URI`` or the ``uri`` option says otherwise
(``qemu+ssh://host/system`` works the same way; see docs/remote-hosts.md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import libvirt
import psutil

from harness.backends.base import BackendError, Instance, InstanceSpec, MemorySample, NotReady
from hostkit.paths import PREFIX
from imagestore.image import Image
from vm import guest, hypervisor
from vm.accel import detect_accel
from vm.console import ConsoleError
from vm.domain import DomainSpec, kernel_cmdline
from vm.machine import VirtualMachine

# Every view MemorySample has and VmMemory measures (host_delta once the sample carries it).
_SAMPLE_FIELDS = tuple(field.name for field in dataclasses.fields(MemorySample))


class LibvirtBackend:
    """Transient libvirt domains, direct kernel boot, READY read from the serial console."""

    name = "libvirt"

    def __init__(self, *, uri: str | None = None, accel: str = "auto", machine: str = "pc",
                 tb_cache_mib: int | None = None, balloon: bool = False,
                 cmdline_extra: str = "", autodestroy: bool = True, console: str = "auto",
                 **_options: Any) -> None:
        self.uri = uri or hypervisor.default_uri()
        self.accel_force = accel
        self.accel = detect_accel(accel)  # remote hosts: redone in prepare()
        self.machine = machine
        self.tb_cache_mib = tb_cache_mib
        self.balloon = balloon
        self.cmdline_extra = cmdline_extra
        self.autodestroy = autodestroy
        self.console = console
        self._conn: libvirt.virConnect | None = None
        self._initrds: dict[str, Path] = {}
        self._bases: dict[str, Path] = {}
        self.live: dict[str, VirtualMachine] = {}

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

    def _initrd(self, image: Image) -> Path:
        if image.digest not in self._initrds:
            self._initrds[image.digest] = guest.initramfs_for(image)
        return self._initrds[image.digest]

    def _base_disk(self, image: Image) -> Path:
        if image.digest not in self._bases:
            self._bases[image.digest] = guest.base_disk_for(image)
        return self._bases[image.digest]

    def _vm(self, instance: Instance) -> VirtualMachine:
        vm = instance.handle
        if not isinstance(vm, VirtualMachine):
            raise BackendError(f"{instance.name} is not a libvirt instance")
        return vm

    # -- protocol ---------------------------------------------------------------------------

    def prepare(self, image: Image) -> None:
        try:
            guest.kernel_path()
            self._initrd(image)
        except guest.GuestError as error:
            raise BackendError(str(error)) from None
        if not hypervisor.is_local(self.uri):
            try:
                self.accel = hypervisor.detect_accel_for(self.conn, self.accel_force)
            except libvirt.libvirtError as error:
                raise BackendError(f"cannot read capabilities of {self.uri}: "
                                   f"{error.get_error_message()}") from None
        self.conn  # noqa: B018 - fail early if libvirtd is not there

    def start(self, spec: InstanceSpec) -> Instance:
        if not spec.name.startswith(PREFIX):
            raise BackendError(f"instance names start with {PREFIX!r}, not {spec.name!r}")
        accel = self.accel
        if spec.accel != "auto":
            accel = hypervisor.detect_accel_for(self.conn, spec.accel)
        try:
            domain = DomainSpec(
                name=spec.name, kernel=guest.kernel_path(), initrd=self._initrd(spec.image),
                memory_mib=spec.guest_memory_mib, vcpus=spec.vcpus,
                cmdline=kernel_cmdline(pci=spec.disk or self.balloon, extra=self.cmdline_extra),
                accel=accel.accel, tb_cache_mib=self.tb_cache_mib, balloon=self.balloon,
                machine=self.machine,
            )
            vm = VirtualMachine.start(
                self.conn, domain, autodestroy=self.autodestroy, console=self.console,
                disk_base=self._base_disk(spec.image) if spec.disk else None,
            )
        except (libvirt.libvirtError, guest.GuestError, ValueError) as error:
            message = (error.get_error_message() if isinstance(error, libvirt.libvirtError)
                       else str(error))
            raise BackendError(f"cannot start VM {spec.name}: {message}") from None
        self.live[spec.name] = vm
        return Instance(name=spec.name, backend=self.name, handle=vm,
                        pids=[vm.pid] if vm.pid else [])

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        try:
            self._vm(instance).wait_ready(timeout)
        except ConsoleError as error:
            lines = error.output.decode(errors="replace").strip().splitlines()
            last = f"; last console line: {lines[-1].strip()!r}" if lines else ""
            raise NotReady(f"VM {instance.name}: {error}{last}") from None

    def stop(self, instance: Instance) -> None:
        vm = self._vm(instance)
        try:
            vm.stop()
        except libvirt.libvirtError as error:
            raise BackendError(f"cannot destroy VM {instance.name}: "
                               f"{error.get_error_message()}") from None
        finally:
            self.live.pop(instance.name, None)

    def memory(self, instance: Instance) -> MemorySample:
        vm = self._vm(instance)
        try:
            usage = vm.memory()
        except (psutil.Error, libvirt.libvirtError) as error:
            raise BackendError(f"cannot measure VM {instance.name}: {error}") from None
        views = {name: getattr(usage, name) for name in _SAMPLE_FIELDS if hasattr(usage, name)}
        return MemorySample(**views)

    def cleanup(self) -> None:
        for vm in list(self.live.values()):
            try:
                vm.stop()
            except libvirt.libvirtError:
                pass
        self.live.clear()
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"hypervisor": "qemu", "uri": self.uri,
                                 **self.accel.as_dict(), "machine": self.machine,
                                 "tb_cache_mib": self.tb_cache_mib, "balloon": self.balloon,
                                 "console": self.console}
        try:
            facts.update(hypervisor.versions(self.conn))
        except (BackendError, libvirt.libvirtError):
            facts.update(libvirt_version=None, qemu_version=None)
        package = guest.guest_dir() / "kernel-package"
        facts["guest_kernel"] = package.read_text().strip() if package.is_file() else None
        return facts
