"""Reading a guest's serial console until it prints a marker line (``READY``).

Two transports, one interface (``wait_for(timeout)`` then ``close()``):

- :class:`SocketConsole`: a unix socket the caller binds and listens on *before* the VM is
  created; QEMU connects to it as a client (libvirt ``<serial type='unix'><source
  mode='connect'/>``). Event-driven with :mod:`selectors`; no files are polled.
- :class:`StreamConsole`: libvirt's console stream of a pty serial port, which also works
  over remote connections (``qemu+ssh://``); a reader thread signals an event.

Both release their descriptors once the marker is seen, so a live VM costs the caller no
file descriptors after readiness.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

MARKER = b"READY"
FAILURE = b"cvbench-boot:"  # a line the disk boot's init prints when it cannot go on
TAIL_BYTES = 4096
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the terminating NUL


class ConsoleError(Exception):
    """The console closed or timed out before the marker; ``output`` holds its tail."""

    def __init__(self, message: str, output: bytes = b"") -> None:
        super().__init__(message)
        self.output = output


class _LineMatcher:
    """Accumulates console bytes and reports when a line equals the marker."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.tail = b""
        self._partial = b""

    def feed(self, data: bytes) -> bool:
        """True once a line equals the marker; ConsoleError at a :data:`FAILURE` line (a
        guest that will never get there: no need to wait for the timeout)."""
        self.tail = (self.tail + data)[-TAIL_BYTES:]
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-TAIL_BYTES:]
        for line in lines:
            if line.startswith(FAILURE):
                raise ConsoleError("the guest's boot failed", self.tail)
        return any(line.rstrip(b"\r") == self.marker for line in lines)


class SocketConsole:
    """A listening unix socket for one VM's serial console."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise ConsoleError(f"console socket path too long for AF_UNIX "
                               f"({MAX_SOCKET_PATH} bytes at most): {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        self._listener: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(1)
        os.chmod(path, 0o660)
        self._conn: socket.socket | None = None

    def wait_for(self, timeout: float, marker: bytes = MARKER) -> bytes:
        """Block until a console line equals ``marker``; return the output seen so far."""
        deadline = time.monotonic() + timeout
        matcher = _LineMatcher(marker)
        with selectors.DefaultSelector() as selector:
            if self._conn is None:
                assert self._listener is not None, "console already closed"
                selector.register(self._listener, selectors.EVENT_READ)
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    raise ConsoleError(f"no console connection within {timeout:.1f}s")
                self._conn, _ = self._listener.accept()
                selector.unregister(self._listener)
            self._conn.setblocking(False)
            selector.register(self._conn, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise ConsoleError(f"no {marker.decode()} within {timeout:.1f}s", matcher.tail)
                data = self._conn.recv(65536)
                if not data:
                    raise ConsoleError("console closed (guest died)", matcher.tail)
                if matcher.feed(data):
                    return matcher.tail

    def connection(self, timeout: float) -> int:
        """The console connection's descriptor (QEMU's connection accepted first if it is
        not yet), for a caller that drains the console while it waits for something else
        (the ``tcp`` readiness rule); ConsoleError if QEMU does not connect in time."""
        conn = self._accepted(timeout)
        conn.setblocking(False)
        return conn.fileno()

    def send(self, data: bytes, timeout: float) -> None:
        """Write ``data`` to the guest's serial input (accepting QEMU's connection first if
        it is not accepted yet): how the host asks a restored guest to answer."""
        conn = self._accepted(timeout)
        conn.setblocking(True)
        conn.sendall(data)

    def _accepted(self, timeout: float) -> socket.socket:
        """QEMU's console connection, accepted now if it is not yet; ConsoleError if QEMU
        does not connect within ``timeout``."""
        if self._conn is None:
            assert self._listener is not None, "console already closed"
            self._listener.settimeout(timeout)
            try:
                self._conn, _ = self._listener.accept()
            except TimeoutError:
                raise ConsoleError(f"no console connection within {timeout:.1f}s") from None
        return self._conn

    def close(self) -> None:
        """Close both sockets and remove the socket file; idempotent."""
        for sock in (self._conn, self._listener):
            if sock is not None:
                sock.close()
        self._conn = self._listener = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> SocketConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamConsole:
    """A libvirt console stream read by a daemon thread (works on remote URIs)."""

    def __init__(self, open_stream: Callable[[], object]) -> None:
        self._stream = open_stream()
        self._found = threading.Event()
        self._done = threading.Event()
        self._matcher = _LineMatcher(MARKER)
        self._thread = threading.Thread(target=self._read, daemon=True, name="cvbench-console")
        self._thread.start()

    def _read(self) -> None:
        try:
            while not self._found.is_set():
                data = self._stream.recv(65536)  # type: ignore[attr-defined]
                if not data or isinstance(data, int):
                    break
                if self._matcher.feed(data):
                    self._found.set()
        except Exception:  # the stream is aborted on close or guest death; a boot failure
            pass
        finally:
            self._done.set()

    def wait_for(self, timeout: float, marker: bytes = MARKER) -> bytes:
        if marker != MARKER:
            self._matcher.marker = marker
        deadline = time.monotonic() + timeout
        while not self._found.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConsoleError(f"no {marker.decode()} within {timeout:.1f}s",
                                   self._matcher.tail)
            if self._done.wait(remaining) and not self._found.is_set():
                raise ConsoleError("console closed (guest died)", self._matcher.tail)
        return self._matcher.tail

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.abort()  # type: ignore[attr-defined]
            except Exception:  # already finished
                pass
            self._stream = None

    def __enter__(self) -> StreamConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
