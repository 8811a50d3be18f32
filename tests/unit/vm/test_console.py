"""The console socket: READY on its own line, event-driven, EOF and timeouts are errors."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from vm.console import ConsoleError, SocketConsole, StreamConsole


def _client(path: Path, chunks: list[bytes], delay: float = 0.0, close: bool = True) -> None:
    def run() -> None:
        time.sleep(delay)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
            for chunk in chunks:
                sock.sendall(chunk)
                time.sleep(0.01)
            if not close:
                time.sleep(1)

    threading.Thread(target=run, daemon=True).start()


@pytest.mark.timeout(10)
def test_ready_split_across_reads(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    with SocketConsole(path) as console:
        _client(path, [b"[ 0.1] booting\r\nNOT READY\r\nRE", b"ADY\r\n"], delay=0.05,
                close=False)
        output = console.wait_for(5)
        assert output.endswith(b"READY\r\n")
    assert not path.exists()


@pytest.mark.timeout(10)
def test_eof_before_ready_is_an_error_with_output(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    with SocketConsole(path) as console:
        _client(path, [b"Kernel panic - not syncing\r\n"])
        with pytest.raises(ConsoleError, match="closed") as error:
            console.wait_for(5)
        assert b"Kernel panic" in error.value.output


@pytest.mark.timeout(10)
@pytest.mark.parametrize("connect", [False, True])
def test_timeout(tmp_path: Path, connect: bool) -> None:
    path = tmp_path / "c.sock"
    with SocketConsole(path) as console:
        if connect:
            _client(path, [b"slow\r\n"], close=False)
        with pytest.raises(ConsoleError, match="within"):
            console.wait_for(0.3)


class FakeStream:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.aborted = False

    def recv(self, _size: int) -> bytes:
        time.sleep(0.01)
        return self.chunks.pop(0) if self.chunks else b""

    def abort(self) -> None:
        self.aborted = True


@pytest.mark.timeout(10)
def test_stream_console() -> None:
    stream = FakeStream([b"boot\r\n", b"READY\r\n"])
    with StreamConsole(lambda: stream) as console:
        assert console.wait_for(5).endswith(b"READY\r\n")
    assert stream.aborted
    with StreamConsole(lambda: FakeStream([b"panic\r\n"])) as console:
        with pytest.raises(ConsoleError, match="closed"):
            console.wait_for(5)


def test_too_long_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConsoleError, match="too long"):
        SocketConsole(tmp_path / ("x" * 120))
