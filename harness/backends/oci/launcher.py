"""The harness's side of a launcher process (see ``launcher_process.py`` for what it is).

:class:`Launcher` starts one, then sends it commands over one socket. It is thread-safe:
requests from several threads are in flight at once, matched by id (one reader thread wakes
only the thread an answer is for). No descriptor is held per live container. Each launcher is
recorded under ``launchers_dir()`` so that the sweep finds the ones a killed harness left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import BackendError
from harness.backends.oci.launcher_process import MAX_MESSAGE, READY_ID
from hostkit.paths import PREFIX, state_dir

ARGV_TAG = f"{PREFIX}oci-launcher"  # on the launcher's command line: how the sweep knows it
STARTUP_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 120.0  # a runtime command that takes longer is reported as hung
PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the launcher imports the same tree


def launchers_dir() -> Path:
    return state_dir() / "oci-state" / "launchers"


def recorded_launchers() -> list[tuple[Path, int]]:
    """(record, pid) of every launcher recorded here; pid 0 if the record is unreadable."""
    directory = launchers_dir()
    found = []
    for record in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            pid = int(json.loads(record.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            pid = 0
        found.append((record, pid))
    return found


def is_launcher(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return ARGV_TAG.encode() in handle.read()
    except OSError:
        return False


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


@dataclass
class _Pending:
    """One request in flight: its answer, and the event its waiting thread sleeps on."""

    event: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] | None = None


class Launcher:
    """Client of one launcher process: runs runtime commands in its mount namespace.

    One reader thread takes every answer off the socket and wakes only the thread that
    asked (no thundering herd when a batch of 50 starts is in flight).
    """

    def __init__(self, unmount_unified: bool, label: str = "oci") -> None:
        self._ids = itertools.count()
        self._lock = threading.Lock()  # guards _pending and _dead
        self._send_lock = threading.Lock()
        ready = _Pending()  # kept here: the reader thread pops it as soon as it is answered
        self._pending: dict[int, _Pending] = {READY_ID: ready}  # by request id
        self._dead = False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = (
            f"import sys; sys.path.insert(0, {str(PACKAGE_ROOT)!r})\n"
            "from harness.backends.oci.launcher_process import main\n"
            f"main({theirs.fileno()}, {unmount_unified!r})\n"
        )
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", code, ARGV_TAG, label],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._sock: socket.socket | None = ours
        launchers_dir().mkdir(parents=True, exist_ok=True)
        self.record = launchers_dir() / f"{label}-{self.process.pid}.json"
        self.record.write_text(json.dumps({"pid": self.process.pid, "label": label}))
        self._reader = threading.Thread(target=self._read_answers, args=(ours,),
                                        name=f"{ARGV_TAG}-{label}", daemon=True)
        self._reader.start()
        try:
            self._await(READY_ID, ready, STARTUP_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    def alive(self) -> bool:
        return self.process.poll() is None

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
        answer = self._request(message, (stdin, stdout, stderr))
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

    def close(self, timeout: float = 10.0) -> None:
        """Hang up; the launcher exits once it has no child left (killed after ``timeout``)."""
        with self._send_lock:
            sock, self._sock = self._sock, None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # the reader's recv() returns b""
        if self._reader is not threading.current_thread():
            self._reader.join(timeout)
        if sock is not None:
            sock.close()
        self._hung_up()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.record.unlink(missing_ok=True)

    # internals

    def _request(self, message: dict[str, Any], fds: tuple[int, ...]) -> dict[str, Any]:
        """Send one request (with ``fds``) and wait for its answer."""
        request_id = next(self._ids)
        pending = _Pending()
        data = json.dumps({**message, "id": request_id}).encode()
        with self._send_lock:
            with self._lock:
                if self._sock is None or self._dead:
                    raise BackendError("OCI launcher is not running")
                self._pending[request_id] = pending  # before sending: answers come fast
            try:
                socket.send_fds(self._sock, [data], list(fds))
            except OSError as error:
                with self._lock:
                    self._pending.pop(request_id, None)
                raise BackendError(f"OCI launcher: {error.strerror}") from None
        answer = self._await(request_id, pending, COMMAND_TIMEOUT_S)
        if "error" in answer:
            raise BackendError(f"OCI launcher: {message['op']}: {answer['error']}")
        return answer

    def _await(self, request_id: int, pending: _Pending, timeout: float) -> dict[str, Any]:
        """The answer to ``request_id``, once the reader thread filed it."""
        pending.event.wait(timeout)
        with self._lock:
            self._pending.pop(request_id, None)  # given up on: the reader drops its answer
            if pending.answer is not None:
                return pending.answer
            dead = self._dead
        raise BackendError("OCI launcher died" if dead else "OCI launcher: no answer in time")

    def _read_answers(self, sock: socket.socket) -> None:
        """The reader thread: file each answer under its id and wake its thread, until the
        launcher hangs up or the socket is shut down."""
        while True:
            try:
                data = sock.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:
                break
            answer = json.loads(data)
            with self._lock:
                pending = self._pending.pop(answer["id"], None)
                if pending is not None:
                    pending.answer = answer
            if pending is not None:
                pending.event.set()
        self._hung_up()

    def _hung_up(self) -> None:
        """No more answers will come: wake every waiting thread."""
        with self._lock:
            self._dead = True
            waiting = list(self._pending.values())
            self._pending.clear()
        for pending in waiting:
            pending.event.set()


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
