"""`cvbench doctor`: what the host offers, and what each backend still lacks (with the fix)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import hostinfo
from runtime import syscalls
from runtime.paths import cache_dir

SETUP = "run 'bash scripts/setup.sh' as root"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _root() -> Check:
    ok = os.geteuid() == 0
    return Check("root", ok, "running as root" if ok else f"uid {os.geteuid()}", "run as root")


def _namespaces() -> Check:
    flags = 0
    for kind in ("mount", "uts", "ipc", "network", "pid", "cgroup"):
        flags |= syscalls.NAMESPACE_FLAGS[kind]
    pid = os.fork()
    if pid == 0:  # the child tries, so the doctor's own namespaces stay untouched
        try:
            syscalls.unshare(flags)
            os._exit(0)
        except OSError:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    ok = os.waitstatus_to_exitcode(status) == 0
    return Check("namespaces", ok, "pid mount uts ipc net cgroup" if ok else "unshare failed",
                 "run as root on a kernel with namespaces enabled")


def _overlay() -> Check:
    ok = "overlay" in Path("/proc/filesystems").read_text()
    return Check("overlayfs", ok, "available" if ok else "not in /proc/filesystems",
                 "modprobe overlay")


def _cgroups() -> Check:
    mode = hostinfo.cgroup_mode()
    return Check("cgroups", mode in ("v1", "v2", "hybrid"), mode, "mount cgroup hierarchies")


def _ksm() -> Check:
    ok = Path("/sys/kernel/mm/ksm/run").exists()
    return Check("ksm", ok, "available" if ok else "missing", "kernel built with CONFIG_KSM")


def _version(binary: str) -> Check:
    path = shutil.which(binary)
    if not path:
        return Check(binary, False, "not installed", f"apt-get install {binary} ({SETUP})")
    output = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    return Check(binary, True, output.splitlines()[0] if output else path)


def _libvirtd() -> Check:
    try:
        import libvirt
    except ImportError:
        return Check("libvirtd", False, "libvirt-python missing", SETUP)
    uri = os.environ.get("CVBENCH_LIBVIRT_URI", "qemu:///system")
    try:
        connection = libvirt.open(uri)
    except libvirt.libvirtError as error:
        message = str(error).splitlines()[0]
        return Check("libvirtd", False, f"{uri}: {message}", "start it: libvirtd -d; virtlogd -d")
    try:
        version = connection.getLibVersion()
        return Check("libvirtd", True, f"{uri} (libvirt {version // 1000000}."
                     f"{version // 1000 % 1000}.{version % 1000})")
    finally:
        connection.close()


def _accel() -> Check:
    choice = hostinfo.accel()
    return Check("accel", choice["accel"] in ("kvm", "tcg"),
                 f"{choice['accel']}: {choice['reason']}", "install qemu-system-x86")


def _guest_kernel() -> Check:
    path = cache_dir() / "guest" / "vmlinuz"
    ok = path.is_file()
    return Check("guest kernel", ok, str(path) if ok else "not extracted", SETUP)


def _image() -> Check:
    from runtime import image

    try:
        found = image.resolve()
    except image.ImageError as error:
        return Check("image", False, str(error), "cvbench image build")
    return Check("image", True, f"default {found.short_digest}")


CHECKS: dict[str, Callable[[], Check]] = {
    "root": _root,
    "namespaces": _namespaces,
    "overlayfs": _overlay,
    "cgroups": _cgroups,
    "ksm": _ksm,
    "crun": lambda: _version("crun"),
    "runc": lambda: _version("runc"),
    "libvirtd": _libvirtd,
    "accel": _accel,
    "guest kernel": _guest_kernel,
    "image": _image,
}

NEEDS = {
    "process": ("image",),
    "ours": ("root", "namespaces", "overlayfs", "cgroups", "image"),
    "crun": ("root", "namespaces", "overlayfs", "cgroups", "crun", "image"),
    "runc": ("root", "namespaces", "overlayfs", "cgroups", "runc", "image"),
    "libvirt": ("libvirtd", "accel", "guest kernel", "image"),
}


def run_checks() -> list[Check]:
    return [check() for check in CHECKS.values()]


def missing_for(checks: list[Check], backends: tuple[str, ...]) -> list[tuple[str, Check]]:
    """(backend, failed check) pairs for what the requested backends need."""
    by_name = {check.name: check for check in checks}
    return [
        (backend, by_name[need])
        for backend in backends
        for need in NEEDS[backend]
        if not by_name[need].ok
    ]
