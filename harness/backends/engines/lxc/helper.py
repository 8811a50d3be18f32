"""The harness's client of the LXC helper process (``helper_process.py``), which forks each
container's monitor so that monitors are copies of a small process, not of the harness.

The helper records its pid in ``<lxcpath>/.helper-<pid>.json`` until it exits (it outlives the
client while monitors are left), so that ``cvbench clean`` ends one a killed run left.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.backends.base import BackendError
from harness.backends.engines.lxc.config import lxcpath
from hostkit.paths import PREFIX

HELPER_TAG = f"{PREFIX}lxc-helper"
HELPER_START_S = 30.0
REQUEST_TIMEOUT_S = 120.0
PACKAGE_ROOT = Path(__file__).resolve().parents[4]


class HelperClient:
    """Starts containers through the helper process (``helper_process.py``); thread-safe."""

    def __init__(self) -> None:
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._receiving = False
        self._dead = False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = (f"import sys; sys.path.insert(0, {str(PACKAGE_ROOT)!r})\n"
                "from harness.backends.engines.lxc.helper_process import main\n"
                f"main({theirs.fileno()})\n")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", code, HELPER_TAG], pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)  # holds none of the harness's pipes
        finally:
            theirs.close()
        self.sock: socket.socket | None = ours
        lxcpath().mkdir(parents=True, exist_ok=True)
        self.record = lxcpath() / f".helper-{self.process.pid}.json"
        self.record.write_text(json.dumps({"pid": self.process.pid}))
        try:
            self._await(-1, HELPER_START_S)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, name: str, stdout: int, timeout: float = REQUEST_TIMEOUT_S) -> int:
        """Have the helper fork the container's monitor with ``stdout``; its pid."""
        request_id = next(self._ids)
        with self._cond:
            if self.sock is None or self._dead:
                raise BackendError("lxc: helper process is not running")
            try:
                socket.send_fds(self.sock, [json.dumps({
                    "id": request_id, "name": name, "lxcpath": str(lxcpath())}).encode()],
                    [stdout])
            except OSError as error:
                raise BackendError(f"lxc: helper: {error.strerror}") from None
        answer = self._await(request_id, timeout)
        if not answer.get("ok"):
            raise BackendError(f"{name}: lxc start failed: {answer.get('error')}")
        return int(answer["pid"])

    def close(self) -> None:
        with self._cond:
            if self.sock is not None:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)
                self.sock.close()
                self.sock = None
            self._dead = True
            self._cond.notify_all()
        # It exits once its last monitor is gone; it is recorded for `cvbench clean` until then.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(0.5)
        if self.process.poll() is not None:
            self.record.unlink(missing_ok=True)

    def _await(self, request_id: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                while True:
                    if request_id in self._replies:
                        return self._replies.pop(request_id)
                    remaining = deadline - time.monotonic()
                    if self._dead or remaining <= 0:
                        raise BackendError("lxc: helper died" if self._dead
                                           else "lxc: helper: no answer in time")
                    if not self._receiving:
                        self._receiving = True
                        break
                    self._cond.wait(remaining)
            data, hung_up = b"", False
            try:
                import select

                sock = self.sock
                if sock is not None and select.select([sock], [], [], remaining)[0]:
                    data = sock.recv(1 << 16)
                    hung_up = not data
            except (OSError, ValueError):
                hung_up = True
            finally:
                with self._cond:
                    self._receiving = False
                    self._dead = self._dead or hung_up
                    if data:
                        answer = json.loads(data)
                        self._replies[answer["id"]] = answer
                    self._cond.notify_all()
