"""The OCI lifecycle after ``create`` (:mod:`runtime.oci.create`): start, kill, delete.

``start`` writes one byte into the container's exec FIFO: its init, which waits there
(:func:`runtime.child.wait_for_start`), installs its seccomp filter and execs. ``kill``
signals the init through a pidfd checked against its start time; ``delete`` kills what is
left in the cgroup (``--force``, or a container never started), removes the cgroup and the
state directory. Kept apart from ``create`` so that these commands load only what they use
(a command's start-up is most of its time).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal

from hostkit.procs import process_alive, wait_exit
from runtime.handshake import START
from runtime.oci.state import Record, StateError, Store

# runtime.cgroups (a third of a command's imports) is loaded by kill --all and delete only.

GONE_TIMEOUT_S = 10.0


class LifecycleError(Exception):
    """An operation failed (not bad input); the message is one line."""


def start(store: Store, container_id: str) -> list[str]:
    """Let a created container's init exec its process (one byte into its exec FIFO), then
    run its ``poststart`` hooks; their failures, as warnings."""
    record = store.load(container_id)
    status = store.status(record)
    if status != "created":
        raise StateError(f"container {container_id} is {status}, not created")
    fifo = store.fifo(container_id)
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ENXIO:  # nobody reads: the init is gone
            raise StateError(f"container {container_id} is stopped, not created") from None
        raise LifecycleError(f"{container_id}: cannot open {fifo}: {error.strerror}") from None
    try:
        os.write(fd, START)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(fifo)
    return _hooks("poststart", record, store)


def _hooks(stage: str, record: Record, store: Store) -> list[str]:
    """Run ``record``'s hooks of ``stage`` (poststart, poststop); a failure is a warning."""
    if not record.hooks.get(stage):
        return []
    from runtime.oci import hooks

    state = store.state(record)
    try:
        hooks.run(stage, record.hooks, state)
    except hooks.HookError as error:
        return [str(error)]
    return []


def parse_signal(text: str) -> int:
    """A signal given by number, name (``KILL``) or full name (``SIGKILL``); ValueError."""
    if text.isdigit():
        number = int(text)
        if not 0 < number < signal.NSIG:
            raise ValueError(f"signal {text} out of range")
        return number
    name = text.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(f"unknown signal {text!r}") from None


def kill(store: Store, container_id: str, signum: int, *, every: bool = False) -> None:
    """Send ``signum`` to the container's init (``every``: to every process of its cgroup)."""
    record = store.load(container_id)
    if store.status(record) == "stopped":
        raise StateError(f"container {container_id} is stopped")
    if every:
        from runtime import cgroups

        for pid in cgroups.driver().procs(record.cgroup):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        return
    _signal(record, signum)


def _signal(record: Record, signum: int) -> None:
    """Signal the init through a pidfd, after checking it is still the same process."""
    try:
        pidfd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        return
    try:
        if process_alive(record.pid, record.pid_start):
            signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


def delete(store: Store, container_id: str, *, force: bool = False) -> list[str]:
    """Remove a stopped (or created, or with ``force`` a running) container: what is left of
    its processes, its cgroup, its state directory; then run its ``poststop`` hooks (their
    failures, as warnings)."""
    record = store.load(container_id)
    status = store.status(record)
    if status == "running" and not force:
        raise StateError(f"container {container_id} is running: kill it first, or --force")
    from runtime import cgroups

    driver = cgroups.driver()
    if status != "stopped":
        _signal(record, signal.SIGKILL)
        wait_exit(record.pid, GONE_TIMEOUT_S)
    try:
        if driver.exists(record.cgroup):
            driver.kill(record.cgroup)  # anything it forked that outlived it
            driver.remove(record.cgroup)
    except cgroups.CgroupError as error:
        raise LifecycleError(f"{container_id}: {error}") from None
    if record.default_cgroup_parent:
        driver.remove_parent(record.cgroup.rsplit("/", 1)[0])
    warnings = _hooks("poststop", record, store)
    store.remove(container_id)
    return warnings


def kill_and_wait(pid: int) -> None:
    """SIGKILL ``pid`` and wait (pidfd) until it exited."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_exit(pid, GONE_TIMEOUT_S)


