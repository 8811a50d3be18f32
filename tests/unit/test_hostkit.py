"""hostkit: the host helpers both libraries share."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from hostkit import files, meminfo, mountinfo, procs

MOUNTINFO = (
    "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "40 22 0:35 / /var/lib/my\\040state rw shared:5 - tmpfs tmp\\040fs rw,size=10k\n"
    "41 40 0:36 / /var/lib/my\\040state/containers/a rw - overlay overlay rw,lowerdir=/x\n"
    "42 22 0:37 / /var/lib/my\\040statex rw - tmpfs tmpfs rw\n"
    "garbage line\n"
)


def test_mountinfo_unescapes_and_finds_points_deepest_first() -> None:
    mounts = mountinfo.parse(MOUNTINFO)
    assert [m.point for m in mounts][:2] == ["/", "/var/lib/my state"]
    assert mounts[1].fstype == "tmpfs" and mounts[1].source == "tmp fs"
    assert mountinfo.points_under("/var/lib/my state", mounts) == [
        "/var/lib/my state/containers/a", "/var/lib/my state"]


def test_meminfo_in_bytes(tmp_path) -> None:
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       1000 kB\nMemAvailable:    500 kB\nHugePages_Total:   2\n")
    assert meminfo.read(path) == {"MemTotal": 1024000, "MemAvailable": 512000,
                                  "HugePages_Total": 2}
    assert meminfo.mem_available(path) == 512000
    assert meminfo.mem_available() > 0


ZONEINFO = """\
Node 0, zone   Normal
  pages free     1000
  pagesets
    cpu: 0
              count:    7
              high:     10081
              batch:    63
  vm stats threshold: 40
    cpu: 1
              count:    3
              high:     204462
              batch:    63
  node_unreclaimable:  0
"""


def test_the_per_cpu_free_lists_count_as_available(tmp_path) -> None:
    (tmp_path / "meminfo").write_text("MemAvailable:    500 kB\n")
    (tmp_path / "zoneinfo").write_text(ZONEINFO)
    page = os.sysconf("SC_PAGE_SIZE")
    assert meminfo.per_cpu_free(tmp_path / "zoneinfo") == 10 * page
    assert meminfo.available(tmp_path / "meminfo", tmp_path / "zoneinfo") == 512000 + 10 * page
    assert meminfo.per_cpu_free(tmp_path / "absent") == 0
    assert meminfo.per_cpu_free() >= 0  # this host's


def test_atomic_write_leaves_no_temporary_and_sets_the_mode(tmp_path) -> None:
    target = tmp_path / "out.txt"
    files.atomic_write(target, "one", mode=0o640)
    files.atomic_write(target, b"two")
    assert target.read_text() == "two"
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_wait_exit_and_signal_and_wait() -> None:
    child = subprocess.Popen(["sleep", "30"])
    assert procs.running(child.pid)
    assert not procs.wait_exit(child.pid, 0.05)
    started = time.monotonic()
    assert procs.signal_and_wait(child.pid, signal.SIGTERM, 5)
    assert time.monotonic() - started < 2
    assert not procs.running(child.pid)  # a zombie until reaped
    child.wait()
    assert procs.wait_exit(child.pid, 0)  # gone: true at once
    assert procs.process_alive(os.getpid(), procs.proc_start_time(os.getpid()))


def test_a_process_being_reaped_is_not_running(monkeypatch) -> None:
    """A parent reaping its child marks it X (dead) before the pid is released: that window
    follows the pidfd's exit report, so a caller checking right after a stop can see it."""
    line = {"state": b"S"}
    monkeypatch.setattr(procs, "_stat_after_name", lambda pid: [line["state"], b"1"])
    assert procs.running(4242)
    for state in (b"Z", b"X", b"x"):
        line["state"] = state
        assert not procs.running(4242), state


def test_terminate_kills_after_the_grace_and_checks_identity() -> None:
    stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; while :; do sleep 1; done"])
    time.sleep(0.2)  # let the shell install its trap
    start = procs.proc_start_time(stubborn.pid)
    assert procs.terminate(stubborn.pid, 0, 0, start=(start or 0) + 1)  # not that process
    assert procs.running(stubborn.pid)  # so it got no signal
    started = time.monotonic()
    assert procs.terminate(stubborn.pid, 0.1, 5, start=start)
    assert time.monotonic() - started < 2
    assert stubborn.wait() == -signal.SIGKILL
    assert procs.terminate(stubborn.pid, 0, 0)  # gone: true at once
