"""Identify a process across time: pid plus start time, so a reused pid is never mistaken."""

from __future__ import annotations


def proc_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (/proc/<pid>/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2 :].split()[19])


def process_alive(pid: int | None, start: int | None) -> bool:
    """True if ``pid`` exists and is the process that started at ``start`` (no reuse)."""
    return bool(pid) and start is not None and proc_start_time(pid) == start
