"""The podman backend's own ``podman system service`` (:class:`Service`), on
``<state dir>/podman/<label>.sock``, and the client of its libpod API (:func:`client`).

A service records its pid in ``<label>.json`` beside its socket, so that ``cvbench clean``
stops those a killed run left (:func:`harness.backends.engines.podman.sweeper.kill_services`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.backends.base import BackendError
from harness.backends.engines import common
from harness.backends.engines.podman.config import containers_conf
from hostkit.paths import state_dir
from hostkit.procs import signal_and_wait

API_VERSION = "4.3.0"  # the libpod API version asked for (Debian 12's podman 4.3)
SERVICE_START_S = 30.0
API_TIMEOUT_S = 120


def service_dir() -> Path:
    return state_dir() / "podman"


class Service:
    """A ``podman system service`` of our own, on ``<state dir>/podman/<label>.sock``."""

    def __init__(self, runtime: str, label: str) -> None:
        self.runtime = runtime
        self.label = label
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return service_dir() / f"{self.label}.sock"

    @property
    def conf(self) -> Path:
        return service_dir() / f"{self.label}.conf"

    @property
    def record(self) -> Path:
        return service_dir() / f"{self.label}.json"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        binary = shutil.which("podman")
        if binary is None:
            raise BackendError(f"podman: not installed: {common.SETUP}")
        directory = service_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self.conf.write_text(containers_conf(self.runtime))
        log = open(directory / f"{self.label}.log", "ab")  # the child keeps its own copy
        try:
            self.process = subprocess.Popen(
                [binary, "system", "service", "--time=0", f"unix://{self.socket}"],
                env={**os.environ, "CONTAINERS_CONF": str(self.conf)},
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
                start_new_session=True)  # a Ctrl-C of the harness must not reach it
        finally:
            log.close()
        self.record.write_text(json.dumps({"pid": self.process.pid}))
        deadline = time.monotonic() + SERVICE_START_S
        while not _answers(self.socket):  # set-up, before any clock
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = _tail(directory / f"{self.label}.log")
                self.stop()
                raise BackendError(f"podman: system service did not start ({tail})")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                signal_and_wait(self.process.pid, signal.SIGTERM, 10.0)
                if self.process.poll() is None:
                    self.process.kill()
            self.process.wait()
            self.process = None
        for path in (self.record, self.socket, self.conf, self.socket.with_suffix(".log")):
            path.unlink(missing_ok=True)


def _answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(path))
            sock.sendall(f"GET /v{API_VERSION}/libpod/_ping HTTP/1.0\r\n\r\n".encode())
            return sock.recv(64).startswith(b"HTTP/1.")
    except OSError:
        return False


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"


def client(path: Path) -> Any:
    from podman import PodmanClient

    return PodmanClient(base_url=f"unix://{path}", version=API_VERSION, timeout=API_TIMEOUT_S,
                        max_pool_size=64)


def message(response: Any) -> str:
    """What a libpod API answer says went wrong, in one line."""
    try:
        return str(response.json().get("message") or response.status_code)
    except ValueError:
        return f"HTTP {response.status_code}"
