"""hostkit.procs: a process's start time, the identity that outlives PID reuse."""

from __future__ import annotations

import os
import subprocess

from hostkit import procs
from hostkit.procs import proc_start_time


def test_proc_start_time():
    assert proc_start_time(os.getpid()) > 0
    assert proc_start_time(2**22 + 1) is None


def test_child_exit_code_reaps_a_child_and_says_how_it_ended() -> None:
    exited = subprocess.Popen(["sh", "-c", "exit 3"])
    killed = subprocess.Popen(["sleep", "60"])
    running = subprocess.Popen(["sleep", "60"])
    try:
        killed.kill()
        assert procs.child_exit_code(exited.pid, 10) == 3
        assert procs.child_exit_code(killed.pid, 10) == -9
        assert procs.child_exit_code(running.pid, 0.05) is None  # still runs: not reaped
        assert procs.child_exit_code(exited.pid, 1) is None  # reaped already
    finally:
        running.kill()
        running.wait()
