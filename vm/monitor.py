"""QEMU's QMP monitor, reached the way the serial console is: we listen on a unix socket in
the VM's directory before QEMU starts, and QEMU connects to it as a client at start-up.

Accepting that connection and finishing the capabilities handshake proves QEMU is up (with
``-S``: guest loaded, CPUs stopped); ``cont`` then lets the guest run. No file is polled.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
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
        self._timeout: float | None = None
        self.events: list[dict[str, Any]] = []  # events read while waiting for a reply

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
        self._timeout = timeout
        self._stream = self._conn.makefile("rwb")
        if not self._stream.readline():
            raise MonitorError("QMP monitor closed before its greeting")
        self.execute("qmp_capabilities")

    def execute(self, command: str, arguments: dict[str, Any] | None = None,
                fds: Sequence[int] = ()) -> Any:
        """Run one QMP command; its ``return`` value (MonitorError on an error reply).

        ``fds`` go with the command as SCM_RIGHTS (QMP ``getfd``); events read meanwhile are
        kept in :attr:`events` for :meth:`wait_event`.
        """
        if self._stream is None or self._conn is None:
            raise MonitorError("QMP monitor not connected")
        message = {"execute": command, **({"arguments": arguments} if arguments else {})}
        payload = json.dumps(message).encode() + b"\n"
        if fds:
            socket.send_fds(self._conn, [payload], list(fds))
        else:
            self._stream.write(payload)
            self._stream.flush()
        while True:  # events may come first
            reply = self._read(command)
            if "error" in reply:
                raise MonitorError(f"QMP {command}: {reply['error'].get('desc', reply)}")
            if "return" in reply:
                return reply["return"]
            if "event" in reply:
                self.events.append(reply)

    def wait_event(self, name: str, done: Callable[[dict[str, Any]], bool],
                   timeout: float) -> dict[str, Any]:
        """The first event ``name`` (kept, or read now) whose ``data`` ``done`` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self.events):
                if event.get("event") == name and done(event.get("data", {})):
                    return self.events.pop(index)
            self.events.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._conn is None:
                raise MonitorError(f"no QMP event {name} within {timeout:g}s")
            self._conn.settimeout(remaining)
            try:
                reply = self._read(f"the wait for {name}")
            except TimeoutError:
                raise MonitorError(f"no QMP event {name} within {timeout:g}s") from None
            finally:
                if self._conn is not None:
                    self._conn.settimeout(self._timeout)
            if "event" in reply:
                self.events.append(reply)

    def _read(self, what: str) -> dict[str, Any]:
        line = self._stream.readline()
        if not line:
            raise MonitorError(f"QMP monitor closed during {what}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        """Close our ends and remove the socket file; idempotent."""
        for handle in (self._stream, self._conn, self._listener):
            if handle is not None:
                handle.close()
        self._stream = self._conn = self._listener = None
        self.path.unlink(missing_ok=True)
