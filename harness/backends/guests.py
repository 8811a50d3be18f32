"""What the VM backends (``qemu``, ``libvirt``) share, so both boot the very same guest:
the guest-shaping options, the domain description built from an InstanceSpec, the guest
artifacts (kernel, initramfs and base disk per image digest) and the memory sample."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.backends.base import BackendError, InstanceSpec, MemorySample
from imagestore.image import Image
from vm import guest
from vm.accel import AccelChoice, detect_accel
from vm.domain import DomainSpec, kernel_cmdline
from vm.memory import VmMemory

_SAMPLE_FIELDS = {f.name for f in fields(MemorySample)}


@dataclass(frozen=True)
class GuestOptions:
    """Scenario-file options that change the guest itself; VM backends compared in one run
    must agree on them (the runner checks ``describe()["guest"]``)."""

    machine: str = "pc"
    tb_cache_mib: int | None = None  # TCG translation-block cache; None: QEMU's default
    balloon: bool = False
    cmdline_extra: str = ""
    acpi: bool = False  # ACPI tables (and the timers they describe); off boots faster

    def domain(self, spec: InstanceSpec, accel: str, kernel: Path, initrd: Path) -> DomainSpec:
        """The domain description of ``spec`` (name, memory, vCPUs, kernel, command line)."""
        try:
            return DomainSpec(
                name=spec.name, kernel=kernel, initrd=initrd,
                memory_mib=spec.guest_memory_mib, vcpus=spec.vcpus,
                cmdline=kernel_cmdline(pci=spec.disk or self.balloon, acpi=self.acpi,
                                       extra=self.cmdline_extra),
                accel=accel, tb_cache_mib=self.tb_cache_mib, balloon=self.balloon,
                machine=self.machine, acpi=self.acpi,
            )
        except ValueError as error:
            raise BackendError(f"{spec.name}: {error}") from None

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GuestArtifacts:
    """The guest kernel, and the initramfs and base disk of each image (built once)."""

    _initrds: dict[str, Path] = field(default_factory=dict)
    _bases: dict[str, Path] = field(default_factory=dict)

    def check(self, image: Image) -> None:
        """BackendError if the kernel is missing or the initramfs cannot be built."""
        try:
            guest.kernel_path()
            self.initrd(image)
        except guest.GuestError as error:
            raise BackendError(str(error)) from None

    @staticmethod
    def kernel() -> Path:
        return guest.kernel_path()

    def initrd(self, image: Image) -> Path:
        if image.digest not in self._initrds:
            self._initrds[image.digest] = guest.initramfs_for(image)
        return self._initrds[image.digest]

    def base_disk(self, image: Image) -> Path:
        if image.digest not in self._bases:
            self._bases[image.digest] = guest.base_disk_for(image)
        return self._bases[image.digest]

    @staticmethod
    def kernel_package() -> str | None:
        package = guest.guest_dir() / "kernel-package"
        return package.read_text().strip() if package.is_file() else None


def accel_for(spec: InstanceSpec, default: AccelChoice) -> AccelChoice:
    """The backend's accel, unless the scenario forces one for this instance."""
    return default if spec.accel == "auto" else detect_accel(spec.accel)


def memory_sample(usage: VmMemory) -> MemorySample:
    """A VM's memory views as the harness's sample."""
    return MemorySample(**{name: value for name, value in asdict(usage).items()
                           if name in _SAMPLE_FIELDS})
