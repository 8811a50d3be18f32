"""cgroup limits on this host (v1 path, detection), and the OOM kill being reported."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest
from containers import container_name, run_script

from hostkit import mountinfo
from runtime import cgroups
from runtime.spec import default_spec

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]


def test_detect_mode_matches_this_host():
    mode = cgroups.detect_mode()
    assert mode in ("v1", "v2", "hybrid")
    if Path("/sys/fs/cgroup/memory").is_dir() and Path("/sys/fs/cgroup/unified").is_dir():
        assert mode == "hybrid"


def test_limits_are_written_to_the_cgroups(runtime, built_image):
    spec = default_spec(built_image, "l", memory_limit_mib=48, pids_limit=17, cpu_limit=0.25)
    container = runtime.create(spec, container_name("lim"))
    runtime.start(container)
    runtime.wait_ready(container, 10)
    driver = runtime.cgroups
    pid = container.pid
    assert pid in driver.procs(container.cgroup)
    if driver.mode == "v1":
        root = Path("/sys/fs/cgroup")
        assert int((root / "memory" / container.cgroup / "memory.limit_in_bytes").read_text()) == (
            48 << 20
        )
        assert (root / "pids" / container.cgroup / "pids.max").read_text().strip() == "17"
        assert (root / "cpu" / container.cgroup / "cpu.cfs_quota_us").read_text().strip() == "25000"
        own = Path(f"/proc/{pid}/cgroup").read_text()
        assert f"memory:/{container.cgroup}" in own and f"pids:/{container.cgroup}" in own
    else:
        directory = unified_root() / container.cgroup
        assert int((directory / "memory.max").read_text()) == 48 << 20
        assert (directory / "pids.max").read_text().strip() == "17"
        assert (directory / "cpu.max").read_text().split() == ["25000", "100000"]
        assert f"0::/{container.cgroup}" in Path(f"/proc/{pid}/cgroup").read_text()
    usage = runtime.memory_usage(container)
    assert usage is not None and 0 < usage < 48 << 20
    runtime.destroy(container)
    assert not driver.exists(container.cgroup)


def test_pids_limit_stops_fork_bombs(runtime, built_image):
    script = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 30 & done 2>&1; echo started; kill $(jobs -p)"
    out, _ = run_script(runtime, built_image, script, pids_limit=5)
    assert "can't fork" in out or "Resource temporarily unavailable" in out


def test_cgroup_namespace_hides_the_host_tree(runtime, built_image):
    out, _ = run_script(runtime, built_image, "cat /proc/self/cgroup")
    assert all(line.endswith(":/") for line in out.split())


def test_memory_hog_is_oom_killed_and_reported(runtime, built_image):
    spec = default_spec(
        built_image,
        "oom",
        memory_limit_mib=16,
        args=["/bin/sh", "-c", "echo READY; x=0123456789abcdef; while :; do x=$x$x; done"],
    )
    container = runtime.create(spec, container_name("lim"))
    runtime.start(container)
    runtime.wait_ready(container, 10)
    info = runtime.wait(container, 30)
    assert info is not None, "the hog was not killed"
    assert info.oom_killed
    assert info.signal == signal.SIGKILL
    assert "out of memory" in info.describe()
    runtime.destroy(container)


def unified_root() -> Path:
    """Where this host's cgroup2 hierarchy is mounted (``/sys/fs/cgroup`` on a v2 host,
    ``/sys/fs/cgroup/unified`` on a hybrid one), from its mount table; every host cvbench
    runs on has one (a v1-only host, which has none, fails here rather than skipping)."""
    points = mountinfo.cgroup2_points(mountinfo.read())
    assert points, "no cgroup2 hierarchy is mounted on this host"
    return Path(points[0])


def test_v2_driver_mechanics_on_the_unified_hierarchy():
    """The v2 driver on this host's cgroup2 mount, wherever it is: make, join, kill, remove
    (on a hybrid host no controller is there, so no limits; on a v2 host see the test above
    for them)."""
    import subprocess

    unified = unified_root()
    driver = cgroups.V2Driver(unified)
    parent = f"cvbench-test-v2-{uuid.uuid4().hex[:6]}"
    path = f"{parent}/c1"
    driver.create(path, cgroups.Limits())
    try:
        [procs] = driver.join_files(path)
        child = subprocess.Popen(
            ["/bin/sh", "-c", f"echo 0 > {procs} && echo joined && exec sleep 60"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        assert child.stdout.readline() == b"joined\n"
        assert driver.procs(path) == [child.pid]
        assert driver.kill(path) == [child.pid]
        assert child.wait(5) == -9
        driver.remove(path)
        assert not driver.exists(path)
    finally:
        driver.kill(path)
        driver.remove(path)
        driver.remove_parent(parent)
    assert not (unified / parent).exists()
