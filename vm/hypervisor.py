"""libvirt connection, per-VM directories, domains and their QEMU pids.

Accel detection is in :mod:`vm.accel`, the leftover sweep in :mod:`vm.sweep`.

The connection URI defaults to ``qemu:///system`` and is overridden by the environment
variable ``CVBENCH_LIBVIRT_URI`` or an explicit argument; remote URIs such as
``qemu+ssh://host/system`` work the same way (see docs/remote-hosts.md).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import libvirt
import psutil

from hostkit.paths import state_dir
from vm.accel import AccelChoice, detect_accel, detect_accel_from_capabilities
from vm.domain import OWNER_NS, Owner

DEFAULT_URI = "qemu:///system"
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


def detect_accel_for(conn: libvirt.virConnect, force: str = "auto") -> AccelChoice:
    """The accel of the host behind ``conn``: local hosts are probed directly, remote ones
    through libvirt's capabilities."""
    if is_local(conn.getURI()):
        return detect_accel(force)
    return detect_accel_from_capabilities(conn.getCapabilities(), conn.getURI(), force)


# --- domains -------------------------------------------------------------------------------


def versions(conn: libvirt.virConnect) -> dict[str, str]:
    """libvirt (daemon) and hypervisor versions as dotted strings."""

    def dotted(number: int) -> str:
        return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

    return {"libvirt_version": dotted(conn.getLibVersion()),
            "qemu_version": dotted(conn.getVersion())}


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
