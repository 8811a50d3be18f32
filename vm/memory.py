"""Memory accounting of a QEMU process: PSS/USS/RSS, guest RAM versus VMM overhead.

The guest RAM is found the way Firecracker's memory test finds it: the anonymous read-write
mapping whose size is the guest memory size. What is resident there is the guest's; the
rest of the process's proportional set size is the VMM's own overhead (QEMU, its libraries,
the TCG translation cache, device state).
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class VmMemory:
    """Bytes; ``guest_ram`` is the PSS of the guest-RAM mapping, ``vmm_overhead`` the rest."""

    pss: int | None
    uss: int | None
    rss: int | None
    guest_ram: int | None
    vmm_overhead: int | None


def _size(addr: str) -> int:
    start, end = addr.split("-")
    return int(end, 16) - int(start, 16)


def guest_ram_mapping(pid: int, guest_bytes: int):
    """The smaps entry of the guest RAM: anonymous, rw, exactly (else at least) guest-sized."""
    candidates = []
    for mapping in psutil.Process(pid).memory_maps(grouped=False):
        if mapping.path not in ("", "[anon]") or not mapping.perms.startswith("rw"):
            continue
        size = _size(mapping.addr)
        if size == guest_bytes:
            return mapping
        if size > guest_bytes and "x" not in mapping.perms:
            candidates.append((size, mapping))
    return min(candidates, key=lambda item: item[0])[1] if candidates else None


def qemu_memory(pid: int, guest_mib: int) -> VmMemory:
    """Measure one QEMU process; raises ``psutil.NoSuchProcess`` if it is gone."""
    info = psutil.Process(pid).memory_full_info()
    mapping = guest_ram_mapping(pid, guest_mib << 20)
    guest = mapping.pss if mapping is not None else None
    return VmMemory(pss=info.pss, uss=info.uss, rss=info.rss, guest_ram=guest,
                    vmm_overhead=info.pss - guest if guest is not None else None)
