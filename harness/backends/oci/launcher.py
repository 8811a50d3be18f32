"""The harness's side of a launcher process (see ``launcher_process.py`` for what it is).

:class:`Launcher` starts one through :class:`hostkit.helper.Client`, then sends it commands.
It is thread-safe: requests from several threads are in flight at once. No descriptor is held
per live container. Each launcher is recorded (:class:`hostkit.helper.Record`, tagged
:data:`ARGV_TAG`) so that the sweep finds the ones a killed harness left.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import BackendError
from hostkit import helper
from hostkit.paths import PREFIX

ARGV_TAG = f"{PREFIX}oci-launcher"  # on the launcher's command line: how the sweep knows it
STARTUP_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 120.0  # a runtime command that takes longer is reported as hung


@dataclass(frozen=True)
class Overlay:
    """An overlay the launcher mounts on ``target`` in its own mount namespace while one
    command runs (the container that command starts keeps its own copy)."""

    lower: Path
    upper: Path
    work: Path
    target: Path

    def as_request(self) -> dict[str, str]:
        options = f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work}"
        return {"target": str(self.target), "data": options}


@dataclass(frozen=True)
class Timing:
    """Where one launcher call's time went, in seconds: ``call_s`` the whole call as the
    harness saw it, ``command_s`` the runtime command's own run (from ``posix_spawn`` until
    the launcher reaped it, by the launcher's clock), ``mount_s``/``unmount_s`` the launcher's
    work on the command's overlay. The rest, :attr:`harness_s`, is the harness's share."""

    call_s: float = 0.0
    command_s: float = 0.0
    mount_s: float = 0.0
    unmount_s: float = 0.0

    @property
    def harness_s(self) -> float:
        """The call less the runtime command: the request and answer, the overlay's mount and
        unmount, the descriptors passed (never below 0)."""
        return max(self.call_s - self.command_s, 0.0)


def harness_share(began_ns: int, runtime_s: float) -> float:
    """The seconds since ``began_ns`` (``time.perf_counter_ns``) less ``runtime_s``, the
    runtime's own part of them: the harness's share of a step (never below 0)."""
    return max((time.perf_counter_ns() - began_ns) / 1e9 - runtime_s, 0.0)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str = ""
    stderr: str = ""
    timing: Timing = field(default_factory=Timing)


class Launcher:
    """Client of one launcher process: runs runtime commands in its mount namespace."""

    def __init__(self, unmount_unified: bool, label: str = "oci") -> None:
        try:
            self._client = helper.Client(
                "harness.backends.oci.launcher_process:main", args=(unmount_unified,),
                tag=ARGV_TAG, label=label, name="OCI launcher",
                start_timeout=STARTUP_TIMEOUT_S)
        except helper.HelperError as error:
            raise BackendError(str(error)) from None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self._client.process

    def alive(self) -> bool:
        return self._client.alive()

    def spawn(self, argv: list[str], stdin: int, stdout: int, stderr: int,
              overlay: Overlay | None = None) -> Result:
        """Run ``argv`` with the given stdio to completion; its exit code and timing.

        With ``overlay``, the launcher mounts it in its own mount namespace first (the
        container the command starts gets a copy of it) and unmounts it once the command
        has exited.
        """
        began = time.perf_counter_ns()
        message: dict[str, Any] = {"op": "spawn", "argv": argv}
        if overlay is not None:
            message["overlay"] = overlay.as_request()
        try:
            answer = self._client.request(message, (stdin, stdout, stderr), COMMAND_TIMEOUT_S)
        except helper.Refused as error:
            raise BackendError(f"OCI launcher: spawn: {error}") from None
        except helper.HelperError as error:
            raise BackendError(str(error)) from None
        return Result(answer["rc"], timing=Timing(
            (time.perf_counter_ns() - began) / 1e9, answer.get("command_ns", 0) / 1e9,
            answer.get("mount_ns", 0) / 1e9, answer.get("unmount_ns", 0) / 1e9))

    def run(self, argv: list[str]) -> Result:
        """Run ``argv`` and capture its (small) output in memory files."""
        began = time.perf_counter_ns()
        out = os.memfd_create("cvbench-out", os.MFD_CLOEXEC)
        err = os.memfd_create("cvbench-err", os.MFD_CLOEXEC)
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            spawned = self.spawn(argv, null, out, err)
            stdout, stderr = _read_all(out), _read_all(err)
        finally:
            for fd in (out, err, null):
                os.close(fd)
        call_s = (time.perf_counter_ns() - began) / 1e9
        return Result(spawned.returncode, stdout, stderr,
                      dataclasses.replace(spawned.timing, call_s=call_s))

    def exit_code(self, pid: int, timeout: float) -> int | None:
        """The exit code of the container init ``pid`` (negative: the signal), once it
        exited within ``timeout``; None if it still runs, or is not the launcher's to tell.

        A container's init is reparented to the launcher (a subreaper) when the runtime's
        command that started it exits, and reaped by it; the launcher keeps the status for
        this request (:data:`hostkit.helper.EXIT_STATUS`)."""
        try:
            return self._client.exit_code(pid, timeout)
        except helper.Refused as error:
            raise BackendError(f"OCI launcher: exit status: {error}") from None

    def close(self, timeout: float = 10.0) -> None:
        """Hang up; the launcher exits once it has no child left (killed after ``timeout``)."""
        self._client.close(kill_after=timeout)


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
