"""What each floor step needs from the host, checked in ``prepare()``: a step the host cannot
give is refused in one line naming it, before anything starts (``cvbench run`` exits 2)."""

from __future__ import annotations

from pathlib import Path

from harness.backends.floor import plan as floor_plan

NAMESPACE_FILES = ("pid", "mnt", "uts", "ipc", "net", "cgroup")  # /proc/self/ns/<kind>


def missing(steps: frozenset[str], proc: Path = Path("/proc")) -> str | None:
    """The first step of ``steps`` this host cannot give, as one line; None if none."""
    if floor_plan.NAMESPACES in steps:
        for kind in NAMESPACE_FILES:
            if not (proc / "self" / "ns" / kind).exists():
                return (f"step 'namespaces' needs the {kind} namespace, which this kernel "
                        f"lacks (no {proc}/self/ns/{kind})")
    if floor_plan.ROOTFS in steps:
        try:
            filesystems = (proc / "filesystems").read_text().split()
        except OSError:
            filesystems = []
        if "overlay" not in filesystems:
            return "step 'rootfs' needs overlayfs, which this host lacks (modprobe overlay)"
    if floor_plan.SECCOMP in steps and not (proc / "sys/kernel/seccomp/actions_avail").exists():
        return "step 'seccomp' needs seccomp filters, which this kernel lacks"
    return None
