"""The launcher process: it runs OCI runtime commands for the harness (client: ``launcher.py``).

Started by :class:`harness.backends.oci.launcher.Launcher` as a fresh interpreter, it

- lives in a private mount namespace (mounts ``rslave``); on a hybrid cgroup host it unmounts
  ``/sys/fs/cgroup/unified`` there, which is how crun 1.8 runs on such a host;
- spawns every command with ``posix_spawn``. For ``<runtime> run`` and ``create`` it first
  mounts the container's overlay on the bundle's ``rootfs`` itself, in its own namespace (a
  detached mount made as ours makes it, ``runtime.rootfs.overlay_mount``: fsopen, fsconfig,
  fsmount; then move_mount): no extra process, no extra namespace. The runtime's container
  gets a private copy of it in the mount namespace it clones; once the command has exited,
  the launcher unmounts its own (``umount2``, ``MNT_DETACH``): its mount table holds only
  the starts in flight, never one overlay per live container, and the host's never holds one
  (a runtime's copy made while other starts are in flight holds theirs too, until its
  pivot_root detaches the old root: each container keeps only its own);
- times its own work: each answer carries how long the command ran (``posix_spawn`` until
  reaped) and the overlay's mount and unmount, so the harness can tell its own share of a
  call from the runtime's;
- is a reaper helper process (:mod:`hostkit.helper`): a child subreaper, so a ``<runtime> run
  -d`` container is reparented to it and reaped by it at once, whatever the host's PID 1 does
  with orphans (some never reap them, others late); in a session of its own, so a Ctrl-C of
  the harness does not reach it or the containers; once the harness hangs up, it stays only
  while it has children left to reap.

Its request (:mod:`hostkit.helper`'s protocol) is ``{"op": "spawn", "argv": [...],
"overlay": {"target": ..., "data": ...}}`` (overlay optional) with the command's stdin, stdout
and stderr; its answer, ``{"rc": exit code, "command_ns": ..., "mount_ns": ...,
"unmount_ns": ...}``, comes when the command exits (and its overlay is unmounted), so several
run at once. As every reaper helper it also answers ``exit_status`` for a container's init
(reparented to it once its runtime's command exited): its exit code, for the ``exit``
readiness rule.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from hostkit import helper, syscalls
from runtime.rootfs import overlay_mount_if_supported

MAX_MESSAGE = 1 << 16
UNIFIED = "/sys/fs/cgroup/unified"
RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD)  # default again in commands


def main(sock_fd: int, unmount_unified: bool) -> None:
    """The launcher process's body: serve on ``sock_fd`` until there is nothing left to do."""
    enter_private_mount_namespace(unmount_unified)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    helper.serve(socket.socket(fileno=sock_fd), {"spawn": start}, max_fds=3,
                 max_message=MAX_MESSAGE, reaper=True)


def enter_private_mount_namespace(unmount_unified: bool) -> None:
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
    if unmount_unified:
        syscalls.umount2(UNIFIED, syscalls.MNT_DETACH)


def spawn(argv: list[str], fds: list[int]) -> int:
    """Start ``argv`` with ``fds`` as its stdin, stdout and stderr; return its pid."""
    return os.posix_spawn(
        argv[0],
        argv,
        dict(os.environ),
        file_actions=[(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)],
        setsigdef=RESET_SIGNALS,
    )


def mount_overlay(target: str, options: str) -> None:
    """Mount an overlay (mount ``options``) on ``target`` in this process's mount namespace:
    a detached mount made as ours makes its containers'
    (``runtime.rootfs.overlay_mount_if_supported``), attached on ``target``; mount(2) on a
    kernel without the new mount API.

    Attached under the namespace's ``rslave`` mounts, it is private: the copy a runtime's
    container gets is private too, so the launcher's unmount does not reach it.
    """
    detached = overlay_mount_if_supported(options)
    if detached is None:
        syscalls.mount("overlay", target, "overlay", 0, options)
        return
    try:
        syscalls.attach_mount(detached, target)
    finally:
        os.close(detached)


def unmount(target: str) -> None:
    """Detach ``target``'s mount from this namespace (the containers hold their own copies)."""
    syscalls.umount2(target, syscalls.MNT_DETACH)


@dataclass
class Command:
    """A spawned command: the overlay it was given, the launcher's clocks."""

    overlay_target: str | None = None
    spawned_ns: int = 0  # perf_counter_ns before posix_spawn
    mount_ns: int = 0


def start(request: helper.Request) -> helper.Later:
    """Start the request's command (its overlay mounted first); answered once it exited
    (:func:`finish`). An overlay mounted for a command that did not start is unmounted again
    (the request's descriptors are closed by the helper in any case)."""
    message = request.message
    command = Command()
    try:
        overlay = message.get("overlay")
        if overlay:
            began = time.perf_counter_ns()
            mount_overlay(overlay["target"], overlay["data"])
            command.overlay_target = overlay["target"]
            command.mount_ns = time.perf_counter_ns() - began
        command.spawned_ns = time.perf_counter_ns()
        pid = spawn(message["argv"], request.fds)
    except BaseException:
        if command.overlay_target is not None:
            with contextlib.suppress(OSError):
                unmount(command.overlay_target)
        raise
    return helper.Later(pid, lambda rc: finish(command, rc))


def finish(command: Command, rc: int) -> dict[str, Any]:
    """The answer for an exited command, once its overlay (if any) left this namespace."""
    reaped = time.perf_counter_ns()
    answer: dict[str, Any] = {"rc": rc, "command_ns": reaped - command.spawned_ns,
                              "mount_ns": command.mount_ns, "unmount_ns": 0}
    if command.overlay_target is not None:
        try:
            unmount(command.overlay_target)
        except OSError as error:
            answer.update(rc=-1, error=f"unmount: {error}")
        answer["unmount_ns"] = time.perf_counter_ns() - reaped
    return answer
