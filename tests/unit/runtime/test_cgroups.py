"""cgroups: mode detection and both drivers, on a plain directory standing in for cgroupfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import cgroups, devices
from runtime.cgroups import CgroupError, Limits, V1Driver, V2Driver

HYBRID = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
PURE_V2 = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
"""
PURE_V1 = "\n".join(line for line in HYBRID.splitlines() if "cgroup2" not in line)


def test_detect_mode():
    assert cgroups.detect_mode(HYBRID) == "hybrid"
    assert cgroups.detect_mode(PURE_V2) == "v2"
    assert cgroups.detect_mode(PURE_V1) == "v1"
    with pytest.raises(CgroupError, match="no cgroup"):
        cgroups.detect_mode("27 1 254:0 / / rw - ext4 /dev/vda rw\n")


def test_driver_choice(tmp_path: Path):
    assert isinstance(cgroups.driver("hybrid", tmp_path), V1Driver)
    assert isinstance(cgroups.driver("v1", tmp_path), V1Driver)
    assert isinstance(cgroups.driver("v2", tmp_path), V2Driver)
    with pytest.raises(CgroupError):
        cgroups.driver("v3", tmp_path)


def _v1_root(tmp_path: Path, hierarchies: tuple[str, ...] = ("memory", "pids", "cpu")) -> Path:
    """A fake v1 cgroupfs: one directory per hierarchy; a cpuset root offers CPUs 0-1, node 0."""
    for hierarchy in hierarchies:
        (tmp_path / hierarchy).mkdir()
    if "cpuset" in hierarchies:
        (tmp_path / "cpuset/cpuset.cpus").write_text("0-1\n")
        (tmp_path / "cpuset/cpuset.mems").write_text("0\n")
    return tmp_path


def test_v1_create_writes_limits_per_controller(tmp_path: Path):
    root = _v1_root(tmp_path)
    driver = V1Driver(root)
    limits = Limits(64 << 20, 32, 50000, 100000)
    made = driver.create("cvbench-p/c1", limits)
    assert made == [root / c / "cvbench-p/c1" for c in ("memory", "cpu", "pids")]
    assert (root / "memory/cvbench-p/c1/memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (root / "pids/cvbench-p/c1/pids.max").read_text() == "32"
    assert (root / "cpu/cvbench-p/c1/cpu.cfs_quota_us").read_text() == "50000"
    assert (root / "cpu/cvbench-p/c1/cpu.cfs_period_us").read_text() == "100000"
    assert driver.join_files("cvbench-p/c1", limits) == [str(d / "cgroup.procs") for d in made]


def test_v1_uses_every_hierarchy_limited_or_not(tmp_path: Path):
    root = _v1_root(tmp_path)
    for extra in ("systemd", "devices", "cpuset", "unified", "cpu,cpuacct"):
        (root / extra).mkdir()
    (root / "unified" / "cgroup.controllers").write_text("hugetlb\n")  # the cgroup2 tree
    (root / "cpuacct").symlink_to("cpu,cpuacct")  # an alias is not a hierarchy of its own
    driver = V1Driver(root)
    assert driver.controllers() == ["memory", "cpu", "cpu,cpuacct", "cpuset", "devices",
                                    "pids", "systemd"]
    made = driver.create("cvbench-p/c2", Limits())
    assert made == [root / h / "cvbench-p/c2" for h in driver.hierarchies]
    assert driver.join_files("cvbench-p/c2") == [str(d / "cgroup.procs") for d in made]
    assert not (root / "memory/cvbench-p/c2/memory.limit_in_bytes").exists()
    assert not (root / "unified/cvbench-p").exists()


def test_v1_cpuset_is_inherited_and_device_rules_written_in_order(tmp_path: Path, monkeypatch):
    root = _v1_root(tmp_path, ("memory", "cpuset", "devices"))
    driver = V1Driver(root)
    original = driver._prepare_parent

    def prepare_parent(parent):  # cgroupfs makes these files (empty) in a new directory
        for hierarchy in ("cpuset",):
            (root / hierarchy / parent).mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                (root / hierarchy / parent / name).write_text("\n")
        original(parent)

    driver._prepare_parent = prepare_parent
    written = []
    original_apply = driver._apply

    def apply(path, limits):
        cpuset = root / "cpuset" / path
        for name in ("cpuset.cpus", "cpuset.mems"):
            (cpuset / name).write_text("\n")
        original_apply(path, limits)

    driver._apply = apply
    rules = devices.container_rules([devices.DENY_ALL])
    real_write = cgroups._write

    def record(path, value, what):
        written.append((path.name, value))
        real_write(path, value, what)

    monkeypatch.setattr(cgroups, "_write", record)
    driver.create("cvbench-p/c6", Limits(devices=rules))
    assert (root / "cpuset/cvbench-p/cpuset.cpus").read_text() == "0-1"
    assert (root / "cpuset/cvbench-p/c6/cpuset.cpus").read_text() == "0-1"
    assert (root / "cpuset/cvbench-p/c6/cpuset.mems").read_text() == "0"
    assert (root / "cpuset/cvbench-p/cgroup.clone_children").read_text() == "1"
    device_writes = [w for w in written if w[0].startswith("devices.")]
    assert device_writes[0] == ("devices.deny", "a *:* rwm")
    assert device_writes[1:] == [("devices.allow", r.v1_line()) for r in devices.DEFAULT_ALLOW]
    assert ("devices.allow", "c 136:* rwm") in device_writes


def test_v1_limits_swap_when_accounted_and_refuses_clashes(tmp_path: Path):
    root = _v1_root(tmp_path)
    driver = V1Driver(root)
    memsw = root / "memory/cvbench-p/c3/memory.memsw.limit_in_bytes"
    original = driver._apply

    def apply(path, limits):
        memsw.write_text("-1")
        original(path, limits)

    driver._apply = apply
    driver.create("cvbench-p/c3", Limits(memory_bytes=8 << 20))
    assert memsw.read_text() == str(8 << 20)
    with pytest.raises(CgroupError, match="already exists"):
        V1Driver(root).create("cvbench-p/c3", Limits())


def test_v1_counters_and_remove(tmp_path: Path):
    root = _v1_root(tmp_path)
    driver = V1Driver(root)
    driver.create("cvbench-p/c4", Limits(memory_bytes=8 << 20))
    memory = root / "memory/cvbench-p/c4"
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (memory / "memory.usage_in_bytes").write_text("12345\n")
    (memory / "cgroup.procs").write_text("10\n11\n")
    assert driver.oom_kills("cvbench-p/c4") == 2
    assert driver.memory_usage("cvbench-p/c4") == 12345
    assert driver.procs("cvbench-p/c4") == [10, 11]
    assert driver.children("cvbench-p") == ["c4"]
    with pytest.raises(CgroupError, match="still in use"):
        driver.remove("cvbench-p/c4")  # a real cgroupfs dir has no files; this one does
    for name in (
        "memory.oom_control",
        "memory.usage_in_bytes",
        "cgroup.procs",
        "memory.limit_in_bytes",
    ):
        (memory / name).unlink(missing_ok=True)
    driver.remove("cvbench-p/c4")
    assert not driver.exists("cvbench-p/c4")


def test_v1_failed_limit_undoes_the_cgroup(tmp_path: Path):
    root = _v1_root(tmp_path)
    driver = V1Driver(root)
    blocker = root / "memory/cvbench-p/c5/memory.limit_in_bytes"
    original = driver._apply

    def apply(path, limits):
        blocker.mkdir()  # the write of the limit fails on this directory
        original(path, limits)

    driver._apply = apply
    with pytest.raises(CgroupError, match="memory limit"):
        driver.create("cvbench-p/c5", Limits(memory_bytes=8 << 20, pids=3))
    assert not (root / "pids/cvbench-p/c5").exists()


def test_v2_enables_every_controller_the_root_offers_and_writes_limits(tmp_path: Path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    driver = V2Driver(tmp_path)
    made = driver.create("cvbench-p/c1", Limits(32 << 20, 10, 20000, 100000))
    directory = tmp_path / "cvbench-p/c1"
    assert made == [directory]
    # as runc does (crun's own list lacks misc and rdma; the harness's OCI parent has them)
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +cpuset +hugetlb +io +pids"
    assert ((tmp_path / "cvbench-p/cgroup.subtree_control").read_text()
            == "+cpu +cpuset +hugetlb +io +memory +pids")
    assert (directory / "memory.max").read_text() == str(32 << 20)
    assert (directory / "pids.max").read_text() == "10"
    assert (directory / "cpu.max").read_text() == "20000 100000"
    assert driver.join_files("cvbench-p/c1") == [str(directory / "cgroup.procs")]


def test_v2_counters(tmp_path: Path):
    driver = V2Driver(tmp_path)
    driver.create("cvbench-p/c2", Limits())
    directory = tmp_path / "cvbench-p/c2"
    (directory / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    (directory / "memory.current").write_text("4096\n")
    assert driver.oom_kills("cvbench-p/c2") == 1
    assert driver.memory_usage("cvbench-p/c2") == 4096
    assert driver.oom_kills("cvbench-p/none") == 0
    assert driver.memory_usage("cvbench-p/none") is None


def test_v2_swap_is_disabled_when_available(tmp_path: Path):
    driver = V2Driver(tmp_path)
    directory = tmp_path / "cvbench-p/c3"
    driver._prepare_parent("cvbench-p")
    driver._parents.add("cvbench-p")
    original = driver._apply

    def apply(path, limits):
        (directory / "memory.swap.max").write_text("max")
        original(path, limits)

    driver._apply = apply
    driver.create("cvbench-p/c3", Limits(memory_bytes=16 << 20))
    assert (directory / "memory.swap.max").read_text() == "0"


def test_the_devices_list_a_rule_sequence_leaves():
    rules = devices.container_rules([devices.DENY_ALL])
    listed = devices.v1_list(rules)
    assert listed == sorted(r.v1_line() for r in devices.DEFAULT_ALLOW)
    assert {"c 5:1 rwm", "c 10:200 rwm", "c *:* m", "b *:* m"} <= set(listed)  # crun + runc
    assert devices.v1_list([*rules, devices.DeviceRule(False, "c", 5, 1)]) == [
        line for line in listed if line != "c 5:1 rwm"]
    assert devices.v1_list(devices.DEFAULT_ALLOW) is None  # no deny-all first: unknown


def test_containers_are_sharded_and_found_under_their_shards(tmp_path: Path):
    from runtime.scopes import SHARDS, container_cgroup, shard

    names = [f"cvbench-t-{i}" for i in range(64)]
    assert {shard(n) for n in names} <= {f"shard-{i:x}" for i in range(SHARDS)}
    assert len({shard(n) for n in names}) > SHARDS // 2  # spread, not piled in one
    assert shard("cvbench-t-1") == shard("cvbench-t-1")  # a function of the name only
    root = _v1_root(tmp_path)
    driver = V1Driver(root)
    paths = [container_cgroup("cvbench-p", n) for n in names[:3]]
    for path in paths:
        driver.create(path, Limits())
    driver.create("cvbench-p/flat", Limits())  # a container made before shards
    assert sorted(driver.containers("cvbench-p")) == sorted(
        [p.removeprefix("cvbench-p/") for p in paths] + ["flat"])
    for path in [*paths, "cvbench-p/flat"]:
        driver.remove(path)
    assert driver.containers("cvbench-p") == []
    assert driver.remove_parent("cvbench-p")
    assert not any((root / h / "cvbench-p").exists() for h in ("memory", "pids", "cpu"))


def test_v1_every_level_of_a_sharded_parent_clones_its_cpuset(tmp_path: Path):
    root = _v1_root(tmp_path, ("memory", "cpuset"))
    driver = V1Driver(root)
    driver.create("cvbench-p/shard-3/c1", Limits())
    for level in ("cvbench-p", "cvbench-p/shard-3"):
        assert (root / "cpuset" / level / "cgroup.clone_children").read_text() == "1"


def test_prepare_layout_makes_the_parent_and_every_shard_before_any_container(tmp_path: Path):
    """The one layout of ours' and the OCI runtimes' containers, made in their prepare():
    v1 with clone_children at every level (so a container's create makes no level of it)."""
    from runtime.scopes import SHARDS, container_cgroup, shards

    root = _v1_root(tmp_path, ("memory", "cpuset", "pids"))
    driver = V1Driver(root)
    driver.prepare_layout("cvbench-p")
    levels = ["cvbench-p", *shards("cvbench-p")]
    assert len(levels) == SHARDS + 1
    for level in levels:
        for hierarchy in ("memory", "cpuset", "pids"):
            assert (root / hierarchy / level).is_dir(), (hierarchy, level)
        assert (root / "cpuset" / level / "cgroup.clone_children").read_text() == "1"
    assert sorted(p.name for p in (root / "memory/cvbench-p").iterdir()) == sorted(
        level.rsplit("/", 1)[1] for level in shards("cvbench-p"))
    calls = []
    driver._prepare_parent = calls.append  # type: ignore[method-assign]
    driver.create(container_cgroup("cvbench-p", "cvbench-c1"), Limits())
    assert calls == []  # prepared: the container's create makes no level of the layout
    described = driver.layout("cvbench-p")
    assert described["parent"] == "cvbench-p" and described["shards"] == SHARDS
    assert described["container"] == "<parent>/shard-<crc32(name) mod 16, hex>/<name>"
    assert "clone_children = 1" in described["parent_settings"]


def test_v2_prepare_layout_enables_the_same_controllers_at_parent_and_shards(tmp_path: Path):
    from runtime.scopes import shards

    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    driver = V2Driver(tmp_path)
    driver.prepare_layout("cvbench-p")
    for level in ["cvbench-p", *shards("cvbench-p")]:
        assert (tmp_path / level / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert "subtree_control" in driver.layout("cvbench-p")["parent_settings"]


def test_a_process_joining_itself_writes_its_thread_to_each_v1_tasks_file(tmp_path):
    """The cold init moves itself through ``tasks`` where a v1 hierarchy has one (no global
    threadgroup lock, no grace period) and through ``cgroup.procs`` where there is none (v2);
    another process (a warm spare, by pid) always through ``cgroup.procs``."""
    from runtime import child

    v1, v2 = tmp_path / "memory", tmp_path / "unified"
    for directory in (v1 / "p", v2 / "p"):
        directory.mkdir(parents=True)
        (directory / "cgroup.procs").write_text("")
    (v1 / "p" / "tasks").write_text("")
    drivers = (V1Driver(tmp_path, hierarchies=("memory",)), V2Driver(v2))
    itself = tuple(f for driver in drivers for f in driver.join_files("p", by_itself=True))
    by_pid = tuple(f for driver in drivers for f in driver.join_files("p"))

    child.join_cgroups(itself, 0)
    assert (v1 / "p" / "tasks").read_text() == "0"
    assert (v1 / "p" / "cgroup.procs").read_text() == ""
    assert (v2 / "p" / "cgroup.procs").read_text() == "0"

    child.join_cgroups(by_pid, 4242)
    assert (v1 / "p" / "cgroup.procs").read_text() == "4242"
    assert (v1 / "p" / "tasks").read_text() == "0"
    assert (v2 / "p" / "cgroup.procs").read_text() == "4242"
