"""``sweep()``: remove what a killed harness left of the floor backend (``cvbench clean``).

Per container directory (``<state dir>/floor/containers/<name>``): its init, if still
running (the pid file's process, if it is a session leader that started between the
directory's creation and the pid file's write: a pid reused since is spared), whatever is
left in its cgroup, the cgroup, the directory; then the plan files and, once empty, the
cgroup parent ``cvbench-floor`` with its shards. ``cvbench clean`` runs only while no run
holds the state directory, so nothing here belongs to a live run. The overlay roots lived
only in the containers' own mount namespaces: they went with their inits.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from harness.backends.floor.paths import PARENT, PID_FILE, cgroup_path, containers_dir, plans_dir
from hostkit.procs import proc_start_time, signal_and_wait
from runtime import cgroups
from runtime.sweep import sweep_cgroup

KILL_TIMEOUT_S = 5.0


def sweep() -> list[str]:
    """Remove every floor leftover of this state directory; one line per object."""
    removed: list[str] = []
    try:
        driver: cgroups.Driver | None = cgroups.driver()
    except cgroups.CgroupError:
        driver = None
    directory = containers_dir()
    for entry in sorted(directory.iterdir()) if directory.is_dir() else ():
        removed += _container(entry, driver)
    plans = plans_dir()
    for plan in sorted(plans.iterdir()) if plans.is_dir() else ():
        plan.unlink(missing_ok=True)
        removed.append(f"floor plan {plan.name}")
    if driver is not None and driver.exists(PARENT) and not driver.containers(PARENT):
        if driver.remove_parent(PARENT):
            removed.append(f"cgroup {PARENT} and its shards")
    return removed


def _container(directory: Path, driver: cgroups.Driver | None) -> list[str]:
    removed = []
    pid = _recorded_init(directory)
    if pid is not None:
        signal_and_wait(pid, signal.SIGKILL, KILL_TIMEOUT_S)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        removed.append(f"floor init {directory.name} (pid {pid})")
    if driver is not None:
        removed.extend(sweep_cgroup(driver, cgroup_path(directory.name), KILL_TIMEOUT_S))
    shutil.rmtree(directory, ignore_errors=True)
    removed.append(f"floor container {directory}")
    return removed


def _recorded_init(directory: Path) -> int | None:
    """The recorded init's pid if that process still is it: a session leader (every init
    calls setsid) started between the directory's creation and the pid file's write."""
    record = directory / PID_FILE
    try:
        pid = int(record.read_text())
        written = record.stat().st_mtime
        made = (directory / "upper").stat().st_mtime
    except (OSError, ValueError):
        return None
    started = _start_seconds(pid)
    try:
        leader = os.getsid(pid) == pid
    except OSError:
        return None
    if started is None or not leader or not made - 1 <= started <= written + 1:
        return None
    return pid


def _start_seconds(pid: int) -> float | None:
    """When ``pid`` started, in seconds since the epoch (its start time after boot)."""
    ticks = proc_start_time(pid)
    if ticks is None:
        return None
    try:
        with open("/proc/stat") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")
