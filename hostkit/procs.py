"""Processes: identity across time (pid plus start time, so a reused pid is never mistaken),
and waiting for an exit through a pidfd."""

from __future__ import annotations

import os
import select
import signal


def _stat_after_name(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (0: state), or None when the
    process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()


def _stat_field(pid: int, index: int) -> int | None:
    """Field ``index`` of /proc/<pid>/stat counted after the command name, or None when the
    process is gone."""
    fields = _stat_after_name(pid)
    return None if fields is None else int(fields[index])


def proc_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (/proc/<pid>/stat field 22), or None."""
    return _stat_field(pid, 19)


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` (/proc/<pid>/stat field 4), or None."""
    return _stat_field(pid, 1)


def process_alive(pid: int | None, start: int | None) -> bool:
    """True if ``pid`` exists and is the process that started at ``start`` (no reuse)."""
    if not pid or start is None:
        return False
    return proc_start_time(pid) == start


def wait_pidfd(pidfd: int, timeout: float | None) -> bool:
    """True once the process behind ``pidfd`` has exited; False if it still runs after
    ``timeout`` seconds (None: forever). The one way cvbench waits for a process."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))


def wait_exit(pid: int, timeout: float | None) -> bool:
    """True once ``pid`` has exited (or never existed), observed through a pidfd: no polling
    step hides in a figure. False if it still runs after ``timeout`` seconds (None: forever).
    A zombie counts as exited; reaping it is the parent's business."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return wait_pidfd(pidfd, timeout)
    finally:
        os.close(pidfd)


def child_exit_code(pid: int, timeout: float) -> int | None:
    """The exit code of ``pid``, a child of this process, once it exited within ``timeout``
    (then reaped), else None (also when it was reaped already); negative: the signal that
    ended it."""
    if not pid or not wait_exit(pid, timeout):
        return None
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)


# Zombie, and dead: a process its parent is reaping at this moment shows X until its pid
# is released, after its pidfd has already reported the exit.
EXITED_STATES = (b"Z", b"X", b"x")


def running(pid: int) -> bool:
    """True if ``pid`` exists and has not exited (neither a zombie nor being reaped)."""
    fields = _stat_after_name(pid)
    return fields is not None and fields[0] not in EXITED_STATES


def signal_and_wait(pid: int, signum: int, timeout: float | None) -> bool:
    """Send ``signum`` through a pidfd (no pid-reuse race) and wait for the exit;
    True once it exited within ``timeout``."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        try:
            signal.pidfd_send_signal(pidfd, signum)
        except ProcessLookupError:
            return True
        return wait_pidfd(pidfd, timeout)
    finally:
        os.close(pidfd)


def terminate(pid: int, grace: float, timeout: float | None, start: int | None = None) -> bool:
    """SIGTERM, SIGKILL after ``grace`` seconds, then wait up to ``timeout`` for the exit, all
    through one pidfd (no pid-reuse race). With ``start``, a ``pid`` that is no longer the
    process started then counts as exited and gets no signal. True once it exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if start is not None and proc_start_time(pid) != start:
            return True
        for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, timeout)):
            try:
                signal.pidfd_send_signal(pidfd, signum)
            except ProcessLookupError:
                return True
            if wait_pidfd(pidfd, wait):
                return True
        return False
    finally:
        os.close(pidfd)
