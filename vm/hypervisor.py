"""libvirt connection, accel detection, transient domains, QEMU pids and the leftover sweep.

The connection URI defaults to ``qemu:///system`` and is overridden by the environment
variable ``CVBENCH_LIBVIRT_URI`` or an explicit argument; remote URIs such as
``qemu+ssh://host/system`` work the same way (see docs/remote-hosts.md).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import libvirt
import psutil

from runtime.paths import PREFIX, state_dir
from vm.domain import OWNER_NS, Owner

DEFAULT_URI = "qemu:///system"
KVM_GET_API_VERSION = 0xAE00
KVM_API_VERSION = 12
QEMU_PID_DIR = Path("/run/libvirt/qemu")


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we raise them instead."""


libvirt.registerErrorHandler(_quiet, None)


def default_uri() -> str:
    return os.environ.get("CVBENCH_LIBVIRT_URI") or DEFAULT_URI


def is_local(uri: str) -> bool:
    """True when the URI names this host (no host part), so its files and pids are ours."""
    return not urlsplit(uri).netloc


def connect(uri: str | None = None) -> libvirt.virConnect:
    """Open a read-write connection; raise ``libvirt.libvirtError`` if the daemon is away."""
    return libvirt.open(uri or default_uri())


def vms_dir() -> Path:
    """Per-VM files (console socket, overlay disk) live in ``vms_dir()/<name>/``."""
    return state_dir() / "vms"


def vm_dir(name: str) -> Path:
    """Create and return the directory of one VM, traversable by QEMU's user.

    QEMU runs as an unprivileged user (``libvirt-qemu``) and must reach the console socket
    and disks: raise ``ValueError`` naming the directory above the state dir that blocks it.
    """
    path = vms_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    for directory in (path, vms_dir(), state_dir()):
        mode = directory.stat().st_mode & 0o7777
        if mode & 0o001 == 0:
            directory.chmod(mode | 0o711)
    for directory in state_dir().resolve().parents:
        if directory.stat().st_mode & 0o001 == 0:
            raise ValueError(f"QEMU's user cannot traverse {directory} (mode "
                             f"{directory.stat().st_mode & 0o777:o}) to reach {path}: use a "
                             "state dir whose parent directories are searchable by others")
    return path


# --- accel ---------------------------------------------------------------------------------


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


def detect_accel(force: str = "auto", *, cpuinfo: Path = Path("/proc/cpuinfo"),
                 kvm_device: Path = Path("/dev/kvm"),
                 modules: Path = Path("/sys/module")) -> AccelChoice:
    """``kvm`` only where the CPU shows vmx/svm and /dev/kvm is usable, else ``tcg``.

    Never boots a probe guest, so it returns at once. ``force`` ("kvm" or "tcg") overrides
    the detection; the reason then says it was forced and what detection would have said.
    """
    if force not in ("auto", "kvm", "tcg"):
        raise ValueError(f"accel must be auto, kvm or tcg, not {force!r}")
    flags = _cpu_flags(cpuinfo)
    virt = sorted(flags & {"vmx", "svm"})
    if not virt:
        detected = AccelChoice("tcg", "CPU flags show neither vmx nor svm"
                               + (f" ({kvm_device} is present but is PVM: kvm_pvm loaded)"
                                  if _pvm_loaded(modules) and kvm_device.exists() else ""))
    elif problem := _kvm_usable(kvm_device):
        detected = AccelChoice("tcg", f"CPU has {virt[0]} but {problem}")
    else:
        detected = AccelChoice("kvm", f"CPU has {virt[0]} and {kvm_device} answers KVM API "
                               f"{KVM_API_VERSION}")
    if force == "auto":
        return detected
    return AccelChoice(force, f"forced to {force} (detection: {detected.accel}, "
                       f"{detected.reason})")


def detect_accel_for(conn: libvirt.virConnect, force: str = "auto") -> AccelChoice:
    """:func:`detect_accel` for the host behind ``conn``: local hosts are probed directly;
    remote ones through libvirt's capabilities (host CPU features and the kvm domain type;
    a listed kvm type alone is not trusted, as PVM hosts list it too)."""
    if is_local(conn.getURI()):
        return detect_accel(force)
    if force not in ("auto", "kvm", "tcg"):
        raise ValueError(f"accel must be auto, kvm or tcg, not {force!r}")
    caps = ET.fromstring(conn.getCapabilities())
    features = {f.get("name") for f in caps.iterfind("host/cpu/feature")}
    virt = sorted(features & {"vmx", "svm"})
    kvm_type = caps.find("guest/arch/domain[@type='kvm']") is not None
    host = urlsplit(conn.getURI()).hostname
    if virt and kvm_type:
        detected = AccelChoice("kvm", f"{host}: CPU has {virt[0]} and libvirt offers kvm")
    elif virt:
        detected = AccelChoice("tcg", f"{host}: CPU has {virt[0]} but libvirt offers no kvm")
    else:
        detected = AccelChoice("tcg", f"{host}: CPU features show neither vmx nor svm")
    if force == "auto":
        return detected
    return AccelChoice(force, f"forced to {force} (detection: {detected.accel}, "
                       f"{detected.reason})")


# --- domains -------------------------------------------------------------------------------


def versions(conn: libvirt.virConnect) -> dict[str, str]:
    """libvirt (daemon) and hypervisor versions as dotted strings."""

    def dotted(number: int) -> str:
        return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

    return {"libvirt_version": dotted(conn.getLibVersion()),
            "qemu_version": dotted(conn.getVersion())}


def create(conn: libvirt.virConnect, xml: str, autodestroy: bool = True) -> libvirt.virDomain:
    """Create and start a transient domain.

    With ``autodestroy`` libvirtd destroys it when this connection closes, also when the
    process is killed; :func:`sweep` handles whatever remains.
    """
    flags = libvirt.VIR_DOMAIN_START_AUTODESTROY if autodestroy else 0
    return conn.createXML(xml, flags)


def destroy(domain: libvirt.virDomain) -> None:
    """Destroy a domain; a domain that is already gone is not an error."""
    try:
        domain.destroy()
    except libvirt.libvirtError as error:
        if error.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN,
                                          libvirt.VIR_ERR_OPERATION_INVALID):
            raise


def qemu_pid(name: str) -> int | None:
    """The host pid of a local domain's QEMU process, from libvirt's pid file or the cmdline."""
    try:
        pid = int((QEMU_PID_DIR / f"{name}.pid").read_text().strip())
        if psutil.pid_exists(pid):
            return pid
    except (OSError, ValueError):
        pass
    needle = f"guest={name},"
    for process in psutil.process_iter(["name", "cmdline"]):
        if (process.info["name"] or "").startswith("qemu-system") and any(
            needle in arg for arg in process.info["cmdline"] or ()
        ):
            return process.pid
    return None


def remove_files(name: str) -> bool:
    """Remove a VM's directory (socket, overlay disk); True if there was one."""
    path = vms_dir() / name
    if not path.exists():
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def domain_owner(domain: libvirt.virDomain) -> Owner | None:
    """The owner recorded in a domain's ``<metadata>`` (None: none recorded, or gone)."""
    try:
        xml = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, OWNER_NS)
    except libvirt.libvirtError as error:
        if error.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN_METADATA,
                                      libvirt.VIR_ERR_NO_DOMAIN):
            return None
        raise
    return Owner.from_xml(xml)


def sweep(uri: str | None = None, prefix: str = PREFIX) -> list[str]:
    """Destroy every domain whose name starts with ``prefix`` and whose owner is dead, and
    remove its files.

    A domain whose recorded owner process still lives (same pid, same start time) is kept,
    files and all: it belongs to a run in progress. Domains without an owner (created
    before owners were recorded) count as dead. Owners are checked in this host's /proc, so
    sweep from the host that ran the benchmark.

    Never raises for an unreachable daemon: it says so in the returned descriptions and
    still removes files of VMs that cannot be running any more (no QEMU process left).
    """
    if not prefix.startswith(PREFIX):
        raise ValueError(f"sweep prefix must start with {PREFIX!r}")
    uri = uri or default_uri()
    done: list[str] = []
    active: set[str] = set()  # names whose files stay: live owner, or QEMU still running
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
        active = {name for name in _dir_names(prefix) if qemu_pid(name) is not None}
    for name in _dir_names(prefix):
        if name not in active and remove_files(name):
            done.append(f"removed {vms_dir() / name}")
    return done


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
