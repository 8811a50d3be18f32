"""A declarative VM description rendered to libvirt domain XML with ElementTree.

The rendered domain is trimmed for boot speed: direct kernel boot (no firmware boot menu, no
bootloader), the ``pc`` machine by default (fewer implicit controllers than ``q35``), no
USB controller, no video, no graphics, no network unless asked (a virtio-net device on a tap
of a host bridge), no balloon unless asked, no ACPI unless asked, and ``destroy`` on every
lifecycle event so a crashed guest disappears instead of
rebooting. The serial console is either a unix socket the caller listens on (local hosts)
or a pty reached through libvirt's console stream (remote hosts). An optional owner (the
process that created the domain) goes into libvirt ``<metadata>`` so that ``sweep`` spares
the domains of runs still in progress.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from hostkit.procs import proc_start_time

ACCEL_DOMAIN_TYPE = {"kvm": "kvm", "tcg": "qemu"}
# QEMU's microVM machine: no PCI bus, its virtio devices on virtio-mmio transports that its
# ACPI tables (or the kernel command line) describe; firmware qboot (bios-microvm.bin).
MICROVM = "microvm"
OWNER_NS = "https://cvbench.invalid/owner"  # our libvirt <metadata> namespace
OWNER_PREFIX = "cvbench"

ET.register_namespace(OWNER_PREFIX, OWNER_NS)

# Kernel command line trimmed for boot speed, since start → READY includes the guest's boot:
# serial console only, quiet, reboot at once on panic (and the domain is destroyed on reboot),
# no ACPI or keyboard-controller probing, no KASLR, no CPU-bug mitigations (a benchmark guest
# running only our /init), one UART, no crypto self-tests.
BOOT_CMDLINE = (
    "console=ttyS0 quiet panic=-1 i8042.noaux i8042.nokbd i8042.nopnp i8042.dumbkbd "
    "8250.nr_uarts=1 cryptomgr.notests no_timer_check mitigations=off random.trust_cpu=on nokaslr"
)


def virtio_transport(machine: str) -> str:
    """How a guest of ``machine`` reaches its virtio devices: ``mmio`` on the microVM machine
    (no PCI bus), else ``pci``."""
    return "mmio" if machine == MICROVM else "pci"


def kernel_cmdline(pci: bool = False, acpi: bool = False, extra: str = "",
                   env: tuple[str, ...] = ()) -> str:
    """The boot command line: ``pci=off`` (no PCI scan) unless a PCI device (disk, network)
    needs it, ``acpi=off`` unless the domain has ACPI, then ``extra``, then ``env``.

    ``env`` items are ``NAME=value`` without a dot in the name: the kernel hands such unknown
    parameters to init as its environment. ValueError if one could not get there intact.
    """
    for item in env:
        name, sep, value = item.partition("=")
        if not sep or not name or "." in name or any(c.isspace() or c in "\"'" for c in item):
            raise ValueError(f"cannot pass {item!r} on a kernel command line (NAME=value, no "
                             "dot in NAME, no spaces or quotes)")
    parts = (BOOT_CMDLINE, "" if pci else "pci=off", "" if acpi else "acpi=off", extra, *env)
    return " ".join(part for part in parts if part)


@dataclass(frozen=True)
class DiskSpec:
    """One virtio disk backed by a file (a qcow2 overlay by default).

    ``cache``: ``none`` opens the file with O_DIRECT (no host page cache); None: the
    hypervisor's default (writeback).
    """

    path: Path
    target: str = "vda"
    format: str = "qcow2"
    readonly: bool = False
    cache: str | None = None


@dataclass(frozen=True)
class NicSpec:
    """One virtio-net device on a tap of host bridge ``bridge``.

    libvirt makes the tap ``tap`` itself (``<interface type='bridge'>``) and passes it to
    QEMU; a bare QEMU is given ``fd``, a tap the caller opened and put on the bridge. No
    vhost-net: the device model runs in QEMU, as under TCG it must.
    """

    bridge: str
    tap: str
    mac: str
    fd: int | None = None


@dataclass(frozen=True)
class Owner:
    """The process that created a domain: its pid and start time (so a reused pid differs)."""

    pid: int
    start: int

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        start = proc_start_time(pid)
        if start is None:
            raise OSError(f"cannot read /proc/{pid}/stat")
        return cls(pid, start)

    def alive(self) -> bool:
        """True while the owning process runs (same pid and the same start time)."""
        return proc_start_time(self.pid) == self.start

    @classmethod
    def from_xml(cls, xml: str) -> Owner | None:
        """Parse the ``<owner pid= start=/>`` element (as libvirt returns it); None if bad."""
        try:
            element = ET.fromstring(xml)
            return cls(int(element.get("pid", "")), int(element.get("start", "")))
        except (ET.ParseError, ValueError):
            return None


@dataclass(frozen=True)
class DomainSpec:
    """Everything that defines one cvbench VM; :func:`render` turns it into domain XML."""

    name: str
    kernel: Path
    initrd: Path
    memory_mib: int = 128
    vcpus: int = 1
    cmdline: str = kernel_cmdline()
    disks: tuple[DiskSpec, ...] = field(default_factory=tuple)
    nics: tuple[NicSpec, ...] = field(default_factory=tuple)
    console_socket: Path | None = None  # None: pty console, read through libvirt's stream
    accel: str = "tcg"  # "tcg" | "kvm"
    tb_cache_mib: int | None = None  # TCG translation-block cache; None: QEMU's default
    balloon: bool = False
    machine: str = "pc"
    acpi: bool = False
    arch: str = "x86_64"
    emulator: str | None = None
    owner: Owner | None = None  # None: no <metadata> element
    # Bare QEMU only: guest RAM mapped from this file instead of anonymous memory, shared
    # (the guest's writes reach the file: a snapshot's RAM being made) or private
    # (copy-on-write: a restore loading the saved RAM on demand, the file never written).
    memory_file: Path | None = None
    memory_shared: bool = False

    @property
    def virtio_transport(self) -> str:
        return virtio_transport(self.machine)

    def __post_init__(self) -> None:
        if self.accel not in ACCEL_DOMAIN_TYPE:
            raise ValueError(f"accel must be kvm or tcg, not {self.accel!r}")
        if self.memory_mib <= 0 or self.vcpus <= 0:
            raise ValueError("memory_mib and vcpus must be positive")
        if self.tb_cache_mib is not None and self.tb_cache_mib <= 0:
            raise ValueError("tb_cache_mib must be positive")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = text
    return element


def _os(domain: ET.Element, spec: DomainSpec) -> None:
    os_ = _sub(domain, "os")
    _sub(os_, "type", "hvm", arch=spec.arch, machine=spec.machine)
    _sub(os_, "kernel", str(spec.kernel))
    _sub(os_, "initrd", str(spec.initrd))
    _sub(os_, "cmdline", spec.cmdline)


def _features(domain: ET.Element, spec: DomainSpec) -> None:
    wanted_tb = spec.accel == "tcg" and spec.tb_cache_mib is not None
    if not (spec.acpi or wanted_tb):
        return
    features = _sub(domain, "features")
    if spec.acpi:
        _sub(features, "acpi")
    if wanted_tb:
        tcg = _sub(features, "tcg")
        _sub(tcg, "tb-cache", str(spec.tb_cache_mib), unit="MiB")


def _console(devices: ET.Element, spec: DomainSpec) -> None:
    if spec.console_socket is not None:
        serial = _sub(devices, "serial", type="unix")
        _sub(serial, "source", mode="connect", path=str(spec.console_socket))
    else:
        serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")


def _disk(devices: ET.Element, disk: DiskSpec) -> None:
    element = _sub(devices, "disk", type="file", device="disk")
    _sub(element, "driver", name="qemu", type=disk.format,
         **({"cache": disk.cache} if disk.cache else {}))
    _sub(element, "source", file=str(disk.path))
    _sub(element, "target", dev=disk.target, bus="virtio")
    if disk.readonly:
        _sub(element, "readonly")


def _nic(devices: ET.Element, nic: NicSpec) -> None:
    element = _sub(devices, "interface", type="bridge")
    _sub(element, "mac", address=nic.mac)
    _sub(element, "source", bridge=nic.bridge)
    _sub(element, "target", dev=nic.tap)
    _sub(element, "model", type="virtio")
    _sub(element, "driver", name="qemu")


def build(spec: DomainSpec) -> ET.Element:
    """The domain as an ElementTree element."""
    if spec.memory_file is not None:
        raise ValueError("a file-mapped guest memory is bare QEMU's only (libvirt renders "
                         "anonymous memory)")
    domain = ET.Element("domain", type=ACCEL_DOMAIN_TYPE[spec.accel])
    _sub(domain, "name", spec.name)
    if spec.owner is not None:
        metadata = _sub(domain, "metadata")
        _sub(metadata, f"{{{OWNER_NS}}}owner", pid=str(spec.owner.pid),
             start=str(spec.owner.start))
    _sub(domain, "memory", str(spec.memory_mib), unit="MiB")
    _sub(domain, "vcpu", str(spec.vcpus))
    _os(domain, spec)
    _features(domain, spec)
    if spec.accel == "kvm":
        _sub(domain, "cpu", mode="host-passthrough")  # under TCG: QEMU's default, qemu64
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        _sub(domain, event, "destroy")
    devices = _sub(domain, "devices")
    if spec.emulator:
        _sub(devices, "emulator", spec.emulator)
    for disk in spec.disks:
        _disk(devices, disk)
    for nic in spec.nics:
        _nic(devices, nic)
    _sub(devices, "controller", type="usb", model="none")
    _console(devices, spec)
    _sub(devices, "memballoon", model="virtio" if spec.balloon else "none")
    return domain


def render(spec: DomainSpec) -> str:
    """The domain XML of ``spec``, indented, without an XML declaration."""
    element = build(spec)
    ET.indent(element, space="  ")
    return ET.tostring(element, encoding="unicode") + "\n"
