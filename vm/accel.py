"""Which accelerator VMs use, and why: ``kvm`` only where it really works, else ``tcg``.

The mere presence of ``/dev/kvm`` proves nothing (a PVM host has one that runs only PVM
guests), so ``kvm`` needs vmx/svm in the CPU flags *and* a device that answers the KVM API.
"""

from __future__ import annotations

import fcntl
import functools
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

KVM_GET_API_VERSION = 0xAE00
KVM_API_VERSION = 12
CHOICES = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class AccelChoice:
    """The accelerator VMs will use and why, for ``cvbench doctor`` and run metadata."""

    accel: str  # "kvm" | "tcg"
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"accel": self.accel, "accel_reason": self.reason}


def _cpu_flags(cpuinfo: Path) -> set[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.cache
def host_tsc_khz(cpuinfo: Path = Path("/proc/cpuinfo")) -> int | None:
    """The host's TSC rate in kHz, at which a TCG guest's TSC runs too (QEMU's TCG reads the
    host's TSC): ``cpu MHz`` of /proc/cpuinfo, trusted only where the host kernel knows the
    TSC's rate and it is constant (``tsc_known_freq`` and ``constant_tsc``); else None.
    Read once (a cold start builds its command line inside the clock)."""
    if not {"tsc_known_freq", "constant_tsc"} <= _cpu_flags(cpuinfo):
        return None
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("cpu MHz"):
            try:
                return round(float(line.split(":", 1)[1]) * 1000)
            except ValueError:
                return None
    return None


def _kvm_usable(device: Path) -> str | None:
    """None if ``device`` answers KVM_GET_API_VERSION with 12, else why it does not."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as error:
        return f"{device} not usable: {error.strerror}"
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as error:
        return f"{device} ioctl KVM_GET_API_VERSION failed: {error.strerror}"
    finally:
        os.close(fd)
    return None if version == KVM_API_VERSION else f"{device} reports KVM API {version}"


def _pvm_loaded(modules: Path) -> bool:
    return (modules / "kvm_pvm").exists()


def _check_force(force: str) -> None:
    if force not in CHOICES:
        raise ValueError(f"accel must be auto, kvm or tcg, not {force!r}")


def _forced(force: str, detected: AccelChoice) -> AccelChoice:
    """``detected``, or ``force`` with a reason that says what detection found."""
    if force == "auto":
        return detected
    return AccelChoice(force, f"forced to {force} (detection: {detected.accel}, "
                       f"{detected.reason})")


def detect_accel(force: str = "auto", *, cpuinfo: Path = Path("/proc/cpuinfo"),
                 kvm_device: Path = Path("/dev/kvm"),
                 modules: Path = Path("/sys/module")) -> AccelChoice:
    """``kvm`` only where the CPU shows vmx/svm and /dev/kvm is usable, else ``tcg``.

    Never boots a probe guest, so it returns at once. ``force`` ("kvm" or "tcg") overrides
    the detection; the reason then says it was forced and what detection would have said.
    """
    _check_force(force)
    virt = sorted(_cpu_flags(cpuinfo) & {"vmx", "svm"})
    if not virt:
        detected = AccelChoice("tcg", "CPU flags show neither vmx nor svm"
                               + (f" ({kvm_device} is present but is PVM: kvm_pvm loaded)"
                                  if _pvm_loaded(modules) and kvm_device.exists() else ""))
    elif problem := _kvm_usable(kvm_device):
        detected = AccelChoice("tcg", f"CPU has {virt[0]} but {problem}")
    else:
        detected = AccelChoice("kvm", f"CPU has {virt[0]} and {kvm_device} answers KVM API "
                               f"{KVM_API_VERSION}")
    return _forced(force, detected)


def detect_accel_from_capabilities(capabilities_xml: str, uri: str,
                                   force: str = "auto") -> AccelChoice:
    """:func:`detect_accel` for a remote host, from libvirt's capabilities XML: host CPU
    features and the kvm domain type (a listed kvm type alone is not trusted, as PVM hosts
    list it too)."""
    _check_force(force)
    caps = ET.fromstring(capabilities_xml)
    features = {f.get("name", "") for f in caps.iterfind("host/cpu/feature")}
    virt = sorted(features & {"vmx", "svm"})
    kvm_type = caps.find("guest/arch/domain[@type='kvm']") is not None
    host = urlsplit(uri).hostname
    if virt and kvm_type:
        detected = AccelChoice("kvm", f"{host}: CPU has {virt[0]} and libvirt offers kvm")
    elif virt:
        detected = AccelChoice("tcg", f"{host}: CPU has {virt[0]} but libvirt offers no kvm")
    else:
        detected = AccelChoice("tcg", f"{host}: CPU features show neither vmx nor svm")
    return _forced(force, detected)
