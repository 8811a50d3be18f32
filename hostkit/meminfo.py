"""``/proc/meminfo`` in bytes."""

from __future__ import annotations

from pathlib import Path

MEMINFO = Path("/proc/meminfo")


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
