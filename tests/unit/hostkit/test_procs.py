"""hostkit.procs: a process's start time, the identity that outlives PID reuse."""

from __future__ import annotations

import os

from hostkit.procs import proc_start_time


def test_proc_start_time():
    assert proc_start_time(os.getpid()) > 0
    assert proc_start_time(2**22 + 1) is None
