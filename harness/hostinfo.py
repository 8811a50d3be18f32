"""Facts about the host that qualify every run (recorded in metadata.json)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from hostkit import meminfo

PACKAGES = ("cvbench", "libvirt-python", "pyroute2", "psutil", "pandas", "matplotlib", "scipy")
REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_kind(model: str) -> str:
    """A CPU model as a short directory name: ``AMD EPYC`` → ``amd-epyc``,
    ``Intel(R) Xeon(R) Processor`` → ``intel-xeon``."""
    words = re.sub(r"\((r|tm)\)|\b(cpu|processor)\b|@.*$", " ", model.lower())
    return re.sub(r"[^a-z0-9]+", "-", words).strip("-") or "unknown"


def git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return result.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def cgroup_mode() -> str:
    """``v1``, ``hybrid`` or ``v2`` (:func:`runtime.cgroups.detect_mode`); ``none`` where no
    cgroup filesystem is mounted (a run refuses such a host first: :mod:`harness.hostkind`)."""
    from runtime.cgroups import CgroupError, detect_mode

    try:
        return detect_mode()
    except CgroupError:
        return "none"


def init_system() -> str:
    """``systemd`` where systemd is PID 1, else PID 1's command name."""
    from harness import hostkind

    return hostkind.init_system()


def accel() -> dict[str, str]:
    """The accelerator VMs get, and why: of this host, or of the remote libvirt host named by
    ``CVBENCH_LIBVIRT_URI`` (asked through libvirt's capabilities)."""
    from vm import hypervisor
    from vm.accel import detect_accel

    uri = hypervisor.default_uri()
    if hypervisor.is_local(uri):
        choice = detect_accel()
        return {"accel": choice.accel, "reason": choice.reason}
    try:
        connection = hypervisor.connect(uri)
    except Exception as error:  # libvirt.libvirtError, unreachable host
        return {"accel": "unknown", "reason": f"{uri} unreachable: {error}", "uri": uri}
    try:
        choice = hypervisor.detect_accel_for(connection)
    finally:
        connection.close()
    return {"accel": choice.accel, "reason": choice.reason, "uri": uri}


def collect() -> dict[str, Any]:
    uname = os.uname()
    mem_total = meminfo.read().get("MemTotal", 0)
    return {
        "host": {
            "hostname": uname.nodename,
            "kernel": uname.release,
            "machine": uname.machine,
            "cpu_model": cpu_model(),
            "machine_kind": machine_kind(cpu_model()),
            "cpus": os.cpu_count(),
            "mem_total_bytes": mem_total,
            "cgroup_mode": cgroup_mode(),
            "init_system": init_system(),
        },
        "accel": accel(),
        "versions": versions(),
        "git_commit": git_commit(),
    }
