"""``cvbench clean``'s part for cvbench-runtime: half-made containers whose ``create`` is gone
are removed with their cgroup; a create at work and made containers are left alone."""

from __future__ import annotations

import os
import subprocess

from hostkit.procs import proc_start_time
from runtime import cgroups
from runtime.oci import sweep
from runtime.oci.state import Record, Store


def test_half_made_containers_of_a_gone_create_are_removed(tmp_path):
    root = tmp_path / "root"
    store = Store(root)
    mine = store.make("working")  # this process is its create, alive
    gone = subprocess.Popen(["true"])
    start = proc_start_time(gone.pid)
    gone.wait()
    dead = root / f".new-{gone.pid}-{start}-left"
    dead.mkdir()
    (dead / "rootfs").mkdir()
    (dead / "cgroup").write_text("cvbench-runtime/left")
    driver = cgroups.V1Driver(tmp_path / "cgroupfs", ("memory",))
    (tmp_path / "cgroupfs/memory/cvbench-runtime/left").mkdir(parents=True)
    store.commit(store.make("made"), Record(
        id="made", bundle="/b", pid=os.getpid(), pid_start=start or 0, cgroup="x",
        created="now", oci_version="1.0.2"))

    lines = sweep.sweep(root, driver)

    assert lines == ["cvbench-runtime cgroup cvbench-runtime/left",
                     f"half-made cvbench-runtime container {dead}"]
    assert not dead.exists()
    assert not (tmp_path / "cgroupfs/memory/cvbench-runtime/left").exists()
    assert mine.exists() and store.ids() == ["made"]
    assert sweep.sweep(tmp_path / "none") == []
