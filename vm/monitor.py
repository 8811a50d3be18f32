"""QEMU's QMP monitor, reached the way the serial console is: we listen on a unix socket in
the VM's directory before QEMU starts, and QEMU connects to it as a client at start-up.

Accepting that connection and finishing the capabilities handshake proves QEMU is up (with
``-S``: guest loaded, CPUs stopped); ``cont`` then lets the guest run. No file is polled.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from vm.console import MAX_SOCKET_PATH


class MonitorError(Exception):
    """QEMU did not connect, closed the monitor, or refused a command."""


class QmpMonitor:
    """One QEMU's QMP connection, on a socket we listen on."""

    def __init__(self, path: Path) -> None:
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise MonitorError(f"monitor socket path too long for AF_UNIX: {path}")
        self.path = path
        path.unlink(missing_ok=True)
        self._listener: socket.socket | None = socket.socket(socket.AF_UNIX,
                                                             socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(1)
        self._conn: socket.socket | None = None
        self._stream: Any = None

    def connect(self, timeout: float) -> None:
        """Accept QEMU's connection and finish the QMP handshake."""
        if self._conn is not None:
            return
        assert self._listener is not None, "monitor already closed"
        self._listener.settimeout(timeout)
        try:
            self._conn, _ = self._listener.accept()
        except TimeoutError:
            raise MonitorError(f"QEMU did not connect to its monitor within {timeout:g}s") \
                from None
        self._conn.settimeout(timeout)
        self._stream = self._conn.makefile("rwb")
        if not self._stream.readline():
            raise MonitorError("QMP monitor closed before its greeting")
        self.execute("qmp_capabilities")

    def execute(self, command: str) -> Any:
        """Run one QMP command; its ``return`` value (MonitorError on an error reply)."""
        if self._stream is None:
            raise MonitorError("QMP monitor not connected")
        self._stream.write(json.dumps({"execute": command}).encode() + b"\n")
        self._stream.flush()
        while True:  # events may come first
            line = self._stream.readline()
            if not line:
                raise MonitorError(f"QMP monitor closed during {command}")
            reply = json.loads(line)
            if "error" in reply:
                raise MonitorError(f"QMP {command}: {reply['error'].get('desc', reply)}")
            if "return" in reply:
                return reply["return"]

    def close(self) -> None:
        """Close our ends and remove the socket file; idempotent."""
        for handle in (self._stream, self._conn, self._listener):
            if handle is not None:
                handle.close()
        self._stream = self._conn = self._listener = None
        self.path.unlink(missing_ok=True)
