"""The harness's side of a launcher process (see ``launcher_process.py`` for what it is).

:class:`Launcher` starts one, then sends it commands over one socket. It is thread-safe:
requests from several threads are in flight at once, matched by id. No descriptor is held per
live container. Each launcher is recorded under ``launchers_dir()`` so that the sweep finds
the ones a killed harness left.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
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
    """An overlay the launcher mounts on ``target`` for one command and its container only."""

    lower: Path
    upper: Path
    work: Path
    target: Path

    def as_request(self) -> dict[str, str]:
        options = f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work}"
        return {"target": str(self.target), "data": options}


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str = ""
    stderr: str = ""


class Launcher:
    """Client of one launcher process: runs runtime commands in its mount namespace."""

    def __init__(self, unmount_unified: bool, label: str = "oci") -> None:
        self._ids = itertools.count()
        self._cond = threading.Condition()  # guards the fields below
        self._send_lock = threading.Lock()
        self._replies: dict[int, dict[str, Any]] = {}  # answers not yet taken, by request id
        self._abandoned: set[int] = set()  # ids whose waiter gave up: drop their answers
        self._receiving = False  # one waiting thread at a time reads the socket
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
        try:
            self._await(READY_ID, STARTUP_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    def alive(self) -> bool:
        return self.process.poll() is None

    def spawn(self, argv: list[str], stdin: int, stdout: int, stderr: int,
              overlay: Overlay | None = None) -> int:
        """Run ``argv`` with the given stdio to completion; return its exit code.

        With ``overlay``, mount it in a mount namespace private to the command (and to the
        container it starts) first.
        """
        message: dict[str, Any] = {"op": "spawn", "argv": argv}
        if overlay is not None:
            message["overlay"] = overlay.as_request()
        return self._request(message, (stdin, stdout, stderr))["rc"]

    def run(self, argv: list[str]) -> Result:
        """Run ``argv`` and capture its (small) output in memory files."""
        out = os.memfd_create("cvbench-out", os.MFD_CLOEXEC)
        err = os.memfd_create("cvbench-err", os.MFD_CLOEXEC)
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            rc = self.spawn(argv, null, out, err)
            return Result(rc, _read_all(out), _read_all(err))
        finally:
            for fd in (out, err, null):
                os.close(fd)

    def close(self, timeout: float = 10.0) -> None:
        """Hang up; the launcher exits once it has no child left (killed after ``timeout``)."""
        with self._send_lock, self._cond:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
                self._sock.close()
                self._sock = None
            self._dead = True
            self._cond.notify_all()
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
        data = json.dumps({**message, "id": request_id}).encode()
        with self._send_lock:
            if self._sock is None or self._dead:
                raise BackendError("OCI launcher is not running")
            try:
                socket.send_fds(self._sock, [data], list(fds))
            except OSError as error:
                raise BackendError(f"OCI launcher: {error.strerror}") from None
        answer = self._await(request_id, COMMAND_TIMEOUT_S)
        if "error" in answer:
            raise BackendError(f"OCI launcher: {message['op']}: {answer['error']}")
        return answer

    def _await(self, request_id: int, timeout: float) -> dict[str, Any]:
        """Wait for the answer to ``request_id``. Waiting threads take turns reading the
        socket; the reader files what it read under its id and wakes the others."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                while True:
                    if request_id in self._replies:
                        return self._replies.pop(request_id)
                    remaining = deadline - time.monotonic()
                    if self._dead or remaining <= 0:
                        self._abandoned.add(request_id)
                        raise BackendError("OCI launcher died" if self._dead
                                           else "OCI launcher: no answer in time")
                    if not self._receiving:
                        self._receiving = True
                        break  # this thread reads
                    self._cond.wait(remaining)
            self._receive_one(remaining)

    def _receive_one(self, timeout: float) -> None:
        """Read at most one answer, waiting up to ``timeout``; then hand the turn on."""
        data = b""
        hung_up = False
        try:
            sock = self._sock
            if sock is not None and select.select([sock], [], [], timeout)[0]:
                data = sock.recv(MAX_MESSAGE)
                hung_up = not data
        except (OSError, ValueError):  # ValueError: closed by close() meanwhile
            hung_up = True
        finally:
            with self._cond:
                self._receiving = False
                self._dead = self._dead or hung_up
                if data:
                    answer = json.loads(data)
                    if answer["id"] in self._abandoned:
                        self._abandoned.discard(answer["id"])
                    else:
                        self._replies[answer["id"]] = answer
                self._cond.notify_all()


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
