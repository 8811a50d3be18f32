"""The wait of each readiness rule on a pipe, a child process and a loopback port: it returns
only once the rule holds, and ends in NotReady (one line) when it cannot."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from harness.backends import readiness
from harness.backends.base import NotReady
from harness.backends.ready_rule import ReadyRule

PAUSE_S = 0.2


class Pipe:
    """A pipe whose write end a test may close early (closed once: a second close could
    hit a descriptor someone else has opened since)."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()

    @property
    def write_fd(self) -> int:
        assert self._write_fd is not None
        return self._write_fd

    def __iter__(self) -> Iterator[int]:
        return iter((self.read_fd, self.write_fd))

    def close_write(self) -> None:
        fd, self._write_fd = self._write_fd, None
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        self.close_write()
        if self.read_fd >= 0:
            os.close(self.read_fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    made = Pipe()
    yield made
    made.close()


class Later:
    """An action a thread runs after a delay, and the moment it began (monotonic), so a
    test asserts that a wait returned after the action, not a duration that the thread's
    head start makes a few microseconds short."""

    def __init__(self, action: Callable[[], object], delay: float = PAUSE_S) -> None:
        self.began: float | None = None

        def run() -> None:
            time.sleep(delay)
            self.began = time.monotonic()
            action()
        threading.Thread(target=run, daemon=True).start()

    def began_before(self, moment: float) -> bool:
        return self.began is not None and self.began <= moment


def returned_at(action: Callable[[], object]) -> float:
    action()
    return time.monotonic()


def test_a_line_of_its_own_and_not_another(pipe) -> None:
    read_fd, write_fd = pipe
    os.write(write_fd, b"READY\nListening\n")  # a line that only starts like it: no match
    wanted = Later(lambda: os.write(write_fd, b"boot\n  Listening on 80 \n"))
    rule = ReadyRule.parse("line:Listening on 80")
    assert wanted.began_before(returned_at(lambda: readiness.wait_rule(rule, read_fd, 5, "i")))


def test_a_line_never_printed(pipe) -> None:
    read_fd, write_fd = pipe
    rule = ReadyRule.parse("line:go")
    with pytest.raises(NotReady, match="^i: no go within 0.1 s$"):
        readiness.wait_rule(rule, read_fd, 0.1, "i")
    os.write(write_fd, b"READY\n")
    pipe.close_write()
    with pytest.raises(NotReady, match="i: workload exited before go"):
        readiness.wait_rule(rule, read_fd, 1, "i")


def test_exit_waits_for_the_output_to_end_then_the_status(pipe) -> None:
    read_fd, write_fd = pipe
    waited: list[float] = []

    def exit_code(timeout: float) -> int:
        waited.append(timeout)
        return 0

    def chatter_then_close() -> None:
        os.write(write_fd, b"working\n" * 20_000)  # more than a pipe holds: drained
        pipe.close_write()

    closing = Later(chatter_then_close)
    rule = ReadyRule.parse("exit")
    done = returned_at(lambda: readiness.wait_rule(rule, read_fd, 5, "i", exit_code=exit_code))
    assert closing.began_before(done) and len(waited) == 1 and 0 < waited[0] <= 5


@pytest.mark.parametrize(("code", "expected"), [
    (3, r"^i: workload exited with status 3 \(output: 'oops'\)$"),
    (-9, "workload exited with signal 9"),
    (None, "workload closed its output but still runs after 1 s"),
])
def test_exit_with_another_status(pipe, code: int | None, expected: str) -> None:
    read_fd, write_fd = pipe
    os.write(write_fd, b"oops\n")
    pipe.close_write()
    with pytest.raises(NotReady, match=expected):
        readiness.wait_rule(ReadyRule.parse("exit"), read_fd, 1, "i",
                            exit_code=lambda _timeout: code)


def test_exit_still_running_or_a_backend_without_status(pipe) -> None:
    read_fd, _write_fd = pipe
    with pytest.raises(NotReady, match="still runs after 0.1 s"):
        readiness.wait_rule(ReadyRule.parse("exit"), read_fd, 0.1, "i", exit_code=lambda _: 0)
    with pytest.raises(NotReady, match="cannot tell its workload's exit status"):
        readiness.wait_rule(ReadyRule.parse("exit"), read_fd, 0.1, "i")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_tcp_returns_once_the_port_accepts(pipe) -> None:
    read_fd, write_fd = pipe
    port = free_port()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def listen() -> None:
        listener.bind(("127.0.0.1", port))
        listener.listen()

    listening = Later(listen)
    Later(lambda: os.write(write_fd, b"chatter\n" * 20_000), 0)  # drained while it waits
    try:
        rule = ReadyRule.parse(f"tcp:{port}")
        done = returned_at(lambda: readiness.wait_rule(rule, read_fd, 5, "i",
                                                       address="127.0.0.1"))
        assert listening.began_before(done)
        assert listening.began is not None and done < listening.began + 1
    finally:
        listener.close()


def test_tcp_never_accepting_or_the_workload_gone(pipe) -> None:
    read_fd, write_fd = pipe
    port = free_port()
    rule = ReadyRule.parse(f"tcp:{port}")
    with pytest.raises(NotReady, match=f"^i: port {port} on 127.0.0.1 accepted no connection "
                                       "within 0.2 s$"):
        readiness.wait_rule(rule, read_fd, 0.2, "i", address="127.0.0.1")
    with pytest.raises(NotReady, match="no address to connect to"):
        readiness.wait_rule(rule, read_fd, 0.2, "i")
    child = subprocess.Popen(["sleep", str(PAUSE_S)])
    try:
        os.write(write_fd, b"bye\n")
        pipe.close_write()  # its output closed: only the pidfd tells the exit
        began = time.monotonic()
        with pytest.raises(NotReady, match=r"exited before port \d+ accepted a connection "
                                           r"\(output: 'bye'\)"):
            readiness.wait_rule(rule, read_fd, 30, "i", address="127.0.0.1", pid=child.pid)
        assert time.monotonic() - began < 10  # its exit ended the wait, not the timeout
    finally:
        child.wait()


def test_tcp_of_a_workload_gone_and_reaped(pipe) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(NotReady, match="exited before port"):
        readiness.wait_rule(ReadyRule.parse(f"tcp:{free_port()}"), pipe.read_fd, 30, "i",
                            address="127.0.0.1", pid=child.pid)


def test_tcp_reports_a_launch_failure(pipe) -> None:
    read_fd, write_fd = pipe
    os.write(write_fd, b"cvbench-error: no such program\n")
    with pytest.raises(NotReady, match="^i: launch failed: no such program$"):
        readiness.wait_rule(ReadyRule.parse(f"tcp:{free_port()}"), read_fd, 5, "i",
                            address="127.0.0.1", error_prefix=b"cvbench-error: ")


def test_the_default_wait_is_todays(pipe) -> None:
    read_fd, write_fd = pipe

    class Handle:
        ready_fd: int | None = read_fd

    handle = Handle()
    os.write(write_fd, b"READY\n")
    pipe.read_fd = -1  # the wait closes it
    readiness.wait_then_close(handle, 1, "i")
    assert handle.ready_fd is None
