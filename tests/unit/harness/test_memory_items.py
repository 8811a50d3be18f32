"""harness.memory_items: kernel counters to per-instance items."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import memory_items

SLABINFO = """slabinfo - version: 2.1
# name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables ...
net_namespace {netns} 10 4096 8 8 : tunables 0 0 0 : slabdata 1 1 0
mnt_cache {mnt} 100 320 25 2 : tunables 0 0 0 : slabdata 4 4 0
kmalloc-1k {k1} 100 1024 16 4 : tunables 0 0 0 : slabdata 4 4 0
mystery {other} 100 64 64 1 : tunables 0 0 0 : slabdata 1 1 0
"""


def _proc(tmp_path: Path, name: str, anon_kb: int, netns: int, mnt: int, k1: int,
          other: int) -> Path:
    proc = tmp_path / name
    proc.mkdir()
    (proc / "meminfo").write_text(f"MemAvailable: 1000 kB\nAnonPages: {anon_kb} kB\n"
                                  "PageTables: 10 kB\nSlab: 100 kB\n")
    (proc / "slabinfo").write_text(SLABINFO.format(netns=netns, mnt=mnt, k1=k1, other=other))
    return proc


def test_itemise_per_instance(tmp_path) -> None:
    before = memory_items.read(_proc(tmp_path, "a", 100, 1, 10, 10, 1))
    after = memory_items.read(_proc(tmp_path, "b", 140, 5, 30, 50, 1))
    items = memory_items.itemise(before, after, 4)
    assert items["anon"] == 10 * 1024
    assert items["page_tables"] == 0
    assert items["slab_netns"] == 4096
    assert items["slab_mounts"] == 20 * 320 / 4
    assert items["slab_kmalloc"] == 40 * 1024 / 4
    assert items["slab_other"] == 0
    assert memory_items.top_caches(before, after, 4, 1) == [("kmalloc-1k", 10240.0)]
    table = memory_items.markdown({"ours": items})
    assert table[0] == "| item | ours |"
    assert any(line.startswith("| slab: mounts | 1.6 |") for line in table)


def test_unreadable_slabinfo_gives_meminfo_items_only(tmp_path) -> None:
    proc = _proc(tmp_path, "a", 100, 1, 1, 1, 1)
    (proc / "slabinfo").unlink()
    counters = memory_items.read(proc)
    assert counters.slabs == {}
    assert "slab_mounts" not in memory_items.itemise(counters, counters, 1)


VMALLOCINFO = """\
0x01-0x02   20480 kernel_clone+0xb8/0x400 pages=4 vmalloc N0=4
0x03-0x04   16384 bpf_prog_alloc_no_stats+0x39/0x230 pages=3 vmalloc N0=3
0x05-0x06   20480 unpurged vm_area
"""


def test_vmalloc_leaves_the_kernel_stacks_to_their_own_item(tmp_path) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    before_proc = _proc(tmp_path, "a", 100, 1, 1, 1, 1)
    (before_proc / "meminfo").write_text("VmallocUsed: 0 kB\nKernelStack: 0 kB\n")
    assert memory_items.read(before_proc).vmalloc_stacks is None  # unreadable: none taken off
    (before_proc / "vmallocinfo").write_text("")
    before = memory_items.read(before_proc)
    after_proc = _proc(tmp_path, "b", 100, 1, 1, 1, 1)
    (after_proc / "meminfo").write_text(f"VmallocUsed: {7 * page // 1024} kB\n"
                                        f"KernelStack: {4 * page // 1024} kB\n")
    (after_proc / "vmallocinfo").write_text(VMALLOCINFO)
    items = memory_items.itemise(before, memory_items.read(after_proc), 1)
    assert items["kernel_stack"] == 4 * page
    assert items["vmalloc"] == 3 * page  # the BPF program's pages, not the stack's again


@pytest.mark.root
def test_an_empty_cgroup_is_measured_and_removed(tmp_path, monkeypatch) -> None:
    from runtime import cgroups
    from runtime.scopes import cgroup_parent

    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "state"))
    cost = memory_items.empty_cgroup_bytes(count=4)
    assert cost is not None and cost > 0  # a memory cgroup's state is never free
    assert not cgroups.driver().exists(cgroup_parent())  # every probe and the parent removed


def test_the_report_states_the_empty_cgroup_cost() -> None:
    from harness.report import facts

    found = dict(facts.host_facts({"empty_cgroup_bytes": 801_792}))
    assert found["empty container cgroup"].startswith("783 KiB")
    assert "empty container cgroup" not in dict(facts.host_facts({}))


def test_the_empty_cgroup_is_noted_once_and_only_for_containers(monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(memory_items, "empty_cgroup_bytes", lambda: calls.append(1) or 1000)
    metadata: dict[str, object] = {}
    memory_items.note_empty_cgroup(metadata, ["qemu", "libvirt"])
    assert metadata == {} and calls == []
    memory_items.note_empty_cgroup(metadata, ["process", "ours"])
    memory_items.note_empty_cgroup(metadata, ["crun"])
    assert metadata == {"empty_cgroup_bytes": 1000} and calls == [1]
