"""``/proc/meminfo`` in bytes, and the free pages it leaves out (the per-CPU free lists)."""

from __future__ import annotations

import os
import re
from pathlib import Path

MEMINFO = Path("/proc/meminfo")
ZONEINFO = Path("/proc/zoneinfo")
_PCP_COUNT = re.compile(r"^\s+count:\s+(\d+)$", re.MULTILINE)


def read(path: Path = MEMINFO) -> dict[str, int]:
    """Every ``/proc/meminfo`` field, in bytes (the kernel's kB lines times 1024; the few
    fields without a unit, such as ``HugePages_Total``, as they are)."""
    values = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def mem_available(path: Path = MEMINFO) -> int:
    """Host ``MemAvailable`` in bytes."""
    try:
        return read(path)["MemAvailable"]
    except KeyError:
        raise RuntimeError(f"no MemAvailable in {path}") from None


def per_cpu_free(path: Path = ZONEINFO) -> int:
    """Bytes of free pages held in the per-CPU free lists (``count`` of every CPU's pageset in
    ``/proc/zoneinfo``); 0 if unreadable. MemFree and MemAvailable leave these pages out, and
    since Linux 6.7 tunes the lists' size to the load, they can hold hundreds of MiB after a
    burst of frees and drain over seconds to minutes (docs/findings/memory-itemised.md)."""
    try:
        text = path.read_text()
    except OSError:
        return 0
    return sum(int(count) for count in _PCP_COUNT.findall(text)) * os.sysconf("SC_PAGE_SIZE")


def available(meminfo: Path = MEMINFO, zoneinfo: Path = ZONEINFO) -> int:
    """``MemAvailable`` plus the per-CPU free lists: memory a new instance could take now,
    steady against where the kernel happens to park its free pages."""
    return mem_available(meminfo) + per_cpu_free(zoneinfo)
