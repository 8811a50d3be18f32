"""Clocks and memory readings shared by the runner and the backends."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.backends.base import MemorySample
from hostkit import meminfo

KSM_DIR = Path("/sys/kernel/mm/ksm")


def now_ns() -> int:
    return time.perf_counter_ns()


def seconds_since(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e9


@dataclass(frozen=True)
class HostMemory:
    """A snapshot of host-wide memory, in bytes (KSM in pages). ``mem_available`` counts the
    per-CPU free lists too (:func:`hostkit.meminfo.available`)."""

    mem_available: int
    committed_as: int
    ksm_pages_shared: int
    ksm_pages_sharing: int

    def as_metrics(self) -> dict[str, tuple[float, str]]:
        return {
            "host_mem_available_bytes": (self.mem_available, "bytes"),
            "host_committed_as_bytes": (self.committed_as, "bytes"),
            "ksm_pages_shared": (self.ksm_pages_shared, "pages"),
            "ksm_pages_sharing": (self.ksm_pages_sharing, "pages"),
        }


def _ksm(counter: str) -> int:
    try:
        return int((KSM_DIR / counter).read_text())
    except (OSError, ValueError):
        return 0


def host_memory() -> HostMemory:
    info = meminfo.read()
    return HostMemory(
        mem_available=info["MemAvailable"] + meminfo.per_cpu_free(),
        committed_as=info["Committed_AS"],
        ksm_pages_shared=_ksm("pages_shared"),
        ksm_pages_sharing=_ksm("pages_sharing"),
    )


# Memory the kernel and processes hold, summed from /proc/meminfo: unlike MemAvailable it does
# not move with the free-page pool, so it is the steadier view of what instances cost.
ACCOUNTED_FIELDS = ("Slab", "KernelStack", "PageTables", "Percpu", "AnonPages", "Shmem")


@dataclass(frozen=True)
class MemoryLevel:
    """Host memory at one moment: MemAvailable (with the per-CPU free lists), and the
    accounted kernel + process memory."""

    available: int
    accounted: int


def memory_level() -> MemoryLevel:
    info = meminfo.read()
    return MemoryLevel(info["MemAvailable"] + meminfo.per_cpu_free(),
                       sum(info.get(f, 0) for f in ACCOUNTED_FIELDS))


def settled_memory_level(
    tolerance: int = 2 * 1024 * 1024, window: int = 8, interval_s: float = 0.25,
    timeout_s: float = 30.0,
) -> MemoryLevel:
    """The median level once MemAvailable stops moving (within ``tolerance`` over ``window``
    readings): namespaces, mounts and cgroups of stopped instances are freed asynchronously by
    the kernel, so a reading right after a teardown is still on its way up.
    """
    readings: list[MemoryLevel] = []
    deadline = time.monotonic() + timeout_s
    while True:
        readings = [*readings[-(window - 1):], memory_level()]
        values = [r.available for r in readings]
        if len(readings) == window and (max(values) - min(values) <= tolerance
                                        or time.monotonic() > deadline):
            return sorted(readings, key=lambda r: r.available)[window // 2]
        time.sleep(interval_s)


def ksm_running() -> bool:
    return _ksm("run") == 1


def ksm_scan_pages() -> int:
    return _ksm("pages_to_scan")


def set_ksm_scan_pages(pages: int) -> None:
    (KSM_DIR / "pages_to_scan").write_text(f"{pages}\n")


KSM_FAST_SCAN_PAGES = 4000  # per 20 ms wake-up: about 800 MB/s, so a settle period suffices


def set_ksm(on: bool) -> None:
    """Turn KSM merging on (scanning fast) or off (root); off also unmerges shared pages."""
    if on:
        (KSM_DIR / "pages_to_scan").write_text(f"{KSM_FAST_SCAN_PAGES}\n")
    (KSM_DIR / "run").write_text("1\n" if on else "2\n")


def process_memory(pids: Iterable[int], include_children: bool = True) -> MemorySample:
    """Sum PSS, USS and RSS of the given processes (and their descendants)."""
    seen: set[int] = set()
    pss = uss = rss = 0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)] if include_children else [root]
        except psutil.Error:
            continue
        for process in processes:
            if process.pid in seen:
                continue
            seen.add(process.pid)
            try:
                full = process.memory_full_info()
            except psutil.Error:
                continue
            pss += full.pss
            uss += full.uss
            rss += full.rss
    return MemorySample(pss=pss, uss=uss, rss=rss)
