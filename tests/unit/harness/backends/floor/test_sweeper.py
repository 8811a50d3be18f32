"""The floor sweeper on a state directory a killed harness left (no kernel objects: the
cgroup driver is left out, and the recorded process is this test's own child)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from harness.backends.floor import sweeper
from harness.backends.floor.paths import PID_FILE, containers_dir, plans_dir


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    """A state directory of this test's own: the session's holds what other tests left."""
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def no_cgroups(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise sweeper.cgroups.CgroupError("no cgroups in a unit test")

    monkeypatch.setattr(sweeper.cgroups, "driver", refuse)


def _container(name: str, pid: int) -> os.PathLike:
    directory = containers_dir() / name
    (directory / "upper").mkdir(parents=True)
    (directory / "work").mkdir()
    (directory / PID_FILE).write_text(f"{pid}\n")
    return directory


def test_kills_a_recorded_init_and_removes_its_directory_and_plans(state_dir, no_cgroups):
    before = time.time()
    directory = containers_dir() / "cvbench-left"
    (directory / "upper").mkdir(parents=True)
    os.utime(directory / "upper", (before - 0.5, before - 0.5))
    init = subprocess.Popen(["sleep", "60"], start_new_session=True)
    (directory / PID_FILE).write_text(f"{init.pid}\n")
    plans_dir().mkdir(parents=True)
    (plans_dir() / "cvbench-floor-1-0.plan").write_bytes(b"CVFLOOR1")
    removed = sweeper.sweep()
    assert init.wait(timeout=5) == -9
    assert f"floor init cvbench-left (pid {init.pid})" in removed
    assert not directory.exists()
    assert not any(plans_dir().iterdir())


def test_spares_a_process_that_reused_the_recorded_pid(state_dir, no_cgroups):
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        time.sleep(0.05)
        directory = _container("cvbench-reused", other.pid)
        later = time.time() + 5  # the directory was made after that process started
        os.utime(directory / "upper", (later, later))
        removed = sweeper.sweep()
        assert other.poll() is None, "a process the record does not describe was killed"
        assert not any(line.startswith("floor init") for line in removed)
        assert not directory.exists()
    finally:
        other.kill()
        other.wait()
