"""Per-instance memory, itemised from kernel counters.

Two snapshots of ``/proc/meminfo`` and ``/proc/slabinfo`` (root), taken with K idle
instances down and up, give the kernel's own account of where the difference went, per
instance: the workload's anonymous pages, page tables, kernel stacks, per-CPU data, tmpfs,
vmalloc, and the slab caches grouped by what owns them (network namespaces, mounts, cgroup
files, tasks, namespaces, dentries and inodes, generic kmalloc). The memory kind records these
as ``mem_item_<item>_bytes`` samples; ``cvbench items`` adds the cost of each
isolation feature by switching one off at a time.

Slab figures are active objects times object size (what the objects themselves take, not
the partly used slab pages around them); ``slab_*`` items add up to ``slab`` only roughly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostkit import meminfo

MEMINFO_ITEMS = {  # item -> /proc/meminfo field
    "anon": "AnonPages",
    "page_tables": "PageTables",
    "kernel_stack": "KernelStack",
    "percpu": "Percpu",
    "shmem": "Shmem",
    "vmalloc": "VmallocUsed",  # less the kernel stacks in it (KernelStack counts them)
    "slab": "Slab",
    "slab_unreclaimable": "SUnreclaim",
}

# slab cache name (exact, or a prefix ending in "*") -> item
SLAB_GROUPS = {
    "slab_netns": ("net_namespace", "sock_inode_cache", "RAW", "RAWv6", "UDP", "UDPv6", "TCP",
                   "TCPv6", "PING", "PINGv6", "fib6_nodes", "ip6_dst_cache", "ip_fib_trie",
                   "ip_fib_alias", "ip6-frags", "ip4-frags", "dst_cache", "netdev*",
                   "inet_peer_cache", "nf_conntrack*", "skbuff*", "xfrm*", "tw_sock*",
                   "request_sock*", "fib6*", "rtnl*"),
    "slab_mounts": ("mnt_cache",),
    "slab_cgroup_files": ("kernfs_node_cache", "kernfs_iattrs_cache", "kernfs_rbnode*"),
    "slab_tasks": ("task_struct", "signal_cache", "sighand_cache", "files_cache", "fs_cache",
                   "mm_struct", "vm_area_struct", "cred_jar", "pid", "anon_vma",
                   "anon_vma_chain", "maple_node", "task_delay_info", "sigqueue", "pid_*",
                   "seccomp*", "perf_event*", "audit*", "lsm*", "uid_cache"),
    "slab_namespaces": ("nsproxy", "pid_namespace", "uts_namespace", "ipc_namespace*",
                        "user_namespace", "mnt_namespace*", "cgroup_namespace*",
                        "time_namespace*"),
    "slab_dentries_inodes": ("dentry", "inode_cache", "shmem_inode_cache", "proc_inode_cache",
                             "ovl_inode", "mqueue_inode_cache", "devpts*", "ext4_inode_cache",
                             "xfs_inode", "btrfs_inode", "radix_tree_node", "xarray*"),
    "slab_kmalloc": ("kmalloc-*", "kmalloc-cg-*", "kmalloc-rcl-*", "dma-kmalloc-*"),
}
ITEMS = (*MEMINFO_ITEMS, *SLAB_GROUPS, "slab_other")
TOTALS = ("slab", "slab_unreclaimable")  # the slab_* groups add up to these (roughly)
LABELS = {
    "anon": "anonymous pages (the workload's own)",
    "page_tables": "page tables",
    "kernel_stack": "kernel stacks",
    "percpu": "per-CPU data (cgroup and netns statistics)",
    "shmem": "tmpfs and shared memory",
    "vmalloc": "vmalloc beyond kernel stacks (seccomp and other BPF programs, ...)",
    "slab": "slab, all caches",
    "slab_unreclaimable": "slab, unreclaimable",
    "slab_netns": "slab: network namespace objects",
    "slab_mounts": "slab: mounts",
    "slab_cgroup_files": "slab: kernfs nodes (cgroup directories and files)",
    "slab_tasks": "slab: tasks (task_struct, mm, vmas, creds, pids, seccomp)",
    "slab_namespaces": "slab: namespace structs",
    "slab_dentries_inodes": "slab: dentries and inodes (overlay, proc, tmpfs, devpts)",
    "slab_kmalloc": "slab: generic kmalloc (cgroup state, shrinker maps, netns parts, filters)",
    "slab_other": "slab: other caches",
}


# Callers /proc/vmallocinfo names for a task's kernel stack on kernels with VMAP_STACK (the
# allocation is inlined into one of them), whose pages VmallocUsed and KernelStack both count.
STACK_CALLERS = ("alloc_thread_stack_node", "dup_task_struct", "copy_process", "kernel_clone")


@dataclass(frozen=True)
class Counters:
    """One reading: /proc/meminfo fields, slab bytes per cache and the kernel stacks' bytes in
    vmalloc space (None if /proc/vmallocinfo is unreadable), all in bytes."""

    meminfo: dict[str, int]
    slabs: dict[str, int]
    vmalloc_stacks: int | None = None



def _slabs(path: Path) -> dict[str, int]:
    """cache -> active objects × object size; {} if unreadable (not root)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    slabs = {}
    for line in lines[2:]:
        fields = line.split()
        if len(fields) > 3:
            slabs[fields[0]] = int(fields[1]) * int(fields[3])
    return slabs


def _vmalloc_stacks(path: Path) -> int | None:
    """Bytes of the vmalloc areas that are kernel stacks; None if unreadable (not root)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    pages = 0
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[2].split("+")[0] in STACK_CALLERS:
            pages += sum(int(f[6:]) for f in fields[3:] if f.startswith("pages="))
    return pages * os.sysconf("SC_PAGE_SIZE")


def read(proc: Path = Path("/proc")) -> Counters:
    return Counters(meminfo.read(proc / "meminfo"), _slabs(proc / "slabinfo"),
                    _vmalloc_stacks(proc / "vmallocinfo"))


def _group(cache: str) -> str:
    for item, names in SLAB_GROUPS.items():
        for name in names:
            if cache == name or (name.endswith("*") and cache.startswith(name[:-1])):
                return item
    return "slab_other"


def itemise(before: Counters, after: Counters, instances: int) -> dict[str, float]:
    """item -> bytes per instance (``after`` - ``before``, divided by ``instances``)."""
    count = max(instances, 1)
    items: dict[str, float] = {}
    for item, field in MEMINFO_ITEMS.items():
        if field in after.meminfo and field in before.meminfo:
            items[item] = (after.meminfo[field] - before.meminfo[field]) / count
    if "vmalloc" in items and after.vmalloc_stacks is not None \
            and before.vmalloc_stacks is not None:
        items["vmalloc"] -= (after.vmalloc_stacks - before.vmalloc_stacks) / count
    if after.slabs and before.slabs:
        for item in (*SLAB_GROUPS, "slab_other"):
            items[item] = 0.0
        for cache in set(after.slabs) | set(before.slabs):
            delta = after.slabs.get(cache, 0) - before.slabs.get(cache, 0)
            items[_group(cache)] += delta / count
    return items


def top_caches(before: Counters, after: Counters, instances: int, n: int = 12
               ) -> list[tuple[str, float]]:
    """The ``n`` slab caches that grew most, bytes per instance."""
    deltas = {cache: (after.slabs.get(cache, 0) - before.slabs.get(cache, 0)) / max(instances, 1)
              for cache in set(after.slabs) | set(before.slabs)}
    return sorted(deltas.items(), key=lambda kv: -kv[1])[:n]


def markdown(columns: dict[str, dict[str, float]]) -> list[str]:
    """A table: one row per item, one column per series (KiB per instance)."""
    names = list(columns)
    lines = ["| item | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for item in ITEMS:
        if any(item in column for column in columns.values()):
            cells = [f"{columns[n][item] / 1024:.1f}" if item in columns[n] else ""
                     for n in names]
            lines.append(f"| {LABELS.get(item, item)} | " + " | ".join(cells) + " |")
    return lines


EMPTY_CGROUP_PROBES = 16


def empty_cgroup_bytes(count: int = EMPTY_CGROUP_PROBES) -> int | None:
    """Kernel memory (slab and per-CPU data) that one empty container cgroup takes on this host
    now, in every hierarchy a container of ``ours`` joins; None without root or cgroups.

    Not a constant of the kernel but of the host's history: each memory cgroup holds a shrinker
    map of one 1 KiB unit (``kmalloc-1k``) per 64 memory-aware shrinkers the host has had at
    once since boot, one per superblock, and every container brings five (overlay root, /proc,
    /dev, /dev/pts, its ipc namespace's mqueue), in crun's and runc's case as in ours. A host
    that once held many thousands of containers pays for their maps in every cgroup it makes
    afterwards, until it reboots (docs/findings/memory-itemised.md). The memory kind records
    this with every run (``empty_cgroup_bytes``) so that figures from hosts of different
    histories are not compared unawares.
    """
    from runtime import cgroups
    from runtime.scopes import cgroup_parent, container_cgroup, shard

    if os.geteuid() != 0:
        return None
    try:
        driver = cgroups.driver()
    except cgroups.CgroupError:
        return None
    parent = cgroup_parent()
    prepared = driver.exists(parent)  # by ours' prepare(): its layout stays for the run
    # the probes share one shard, made (with the parent) by an unmeasured first probe
    names = (f"cvbench-empty-{os.getpid()}-{index}" for index in range(count * 64))
    first = next(names)
    paths = [container_cgroup(parent, name) for name in names
             if shard(name) == shard(first)][:count]
    made: list[str] = []
    try:
        driver.create(container_cgroup(parent, first), cgroups.Limits())
        made.append(container_cgroup(parent, first))
        _wait_slab_quiet()  # the kernel's own frees (a teardown's dying cgroups) would blur it
        before = read()
        for path in paths:
            driver.create(path, cgroups.Limits())
            made.append(path)
        after = read()
    except cgroups.CgroupError:
        return None
    finally:
        for path in reversed(made):
            try:
                driver.remove(path)
            except cgroups.CgroupError:
                pass  # a leftover is under this state directory's parent: cvbench clean
        if not prepared and not driver.containers(parent):
            driver.remove_parent(parent)  # as the runtime leaves it when its last one goes
    items = itemise(before, after, len(paths))
    # the objects themselves (slabinfo), not the slab pages: after a teardown the new objects
    # fill pages freed objects left, and the page count does not move
    return round(sum(items.get(group, 0.0) for group in (*SLAB_GROUPS, "slab_other"))
                 + items.get("percpu", 0.0))


def _wait_slab_quiet(tolerance: int = 256 * 1024, window_s: float = 1.0,
                     timeout_s: float = 60.0) -> None:
    """Wait until the slab total moves by less than ``tolerance`` over ``window_s``."""
    deadline = time.monotonic() + timeout_s
    last = meminfo.read().get("Slab", 0)
    while time.monotonic() < deadline:
        time.sleep(window_s)
        now = meminfo.read().get("Slab", 0)
        if abs(now - last) < tolerance:
            return
        last = now


def note_empty_cgroup(metadata: dict[str, Any], backend_names: Iterable[str]) -> None:
    """Record ``empty_cgroup_bytes`` in a run's metadata, once, when a container backend runs
    (the memory and density kinds: their memory per container depends on it)."""
    from harness.backends import registry

    if "empty_cgroup_bytes" not in metadata and any(
            registry.family(name) == registry.CONTAINER for name in backend_names):
        metadata["empty_cgroup_bytes"] = empty_cgroup_bytes()
