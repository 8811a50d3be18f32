"""The line between create and start on an exec FIFO (:func:`runtime.child.wait_for_start`
with :func:`runtime.child.open_start_fifo`): PREPARED on the host channel, then the wait for
one START byte, which a writer can only send while the waiting side holds the FIFO."""

from __future__ import annotations

import errno
import os
import socket
import threading

import pytest

from runtime import child


def test_the_init_waits_on_the_fifo_after_saying_prepared(tmp_path):
    fifo = tmp_path / "exec.fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(OSError) as nobody:  # no reader yet: a start finds no init
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    assert nobody.value.errno == errno.ENXIO
    ends = child.open_start_fifo(str(fifo))
    host, init = socket.socketpair()
    heard: list[bytes] = []

    def host_side() -> None:
        heard.append(host.recv(1))
        host.close()  # create exits: the init waits on, on the FIFO
        writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # start
        os.write(writer, child.START)
        os.close(writer)

    thread = threading.Thread(target=host_side)
    thread.start()
    child.wait_for_start(init.fileno(), ends)  # returns: START came
    thread.join(10)
    assert heard == [child.PREPARED]
    for fd in ends:  # both ends closed by wait_for_start
        with pytest.raises(OSError):
            os.fstat(fd)
    init.close()


def _executable(path, mode: int = 0o755):
    path.write_text("#!/bin/sh\nexit 3\n")
    path.chmod(mode)
    return path


def test_the_program_is_the_first_executable_file_on_the_path(tmp_path):
    first, second, third = (tmp_path / name for name in ("a", "b", "c"))
    for directory in (first, second, third):
        directory.mkdir()
    (first / "tool").write_text("not executable")  # skipped: no execute bit
    (second / "tool").mkdir()  # skipped: a directory
    found = _executable(third / "tool")
    env = {"PATH": f"{tmp_path / 'missing'}:{first}:{second}:{third}"}
    assert child.find_program("tool", env) == str(found)
    assert child.find_program("other", env) is None
    assert child.find_program("./tool", env) == "./tool"  # a slash: as given, not searched


def _exit_code_of(program, args, env) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            child.exec_program(program, args, env)
        finally:
            os._exit(99)  # exec failed
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_exec_runs_the_found_program_or_searches_when_it_cannot(tmp_path):
    found = _executable(tmp_path / "tool")
    env = {"PATH": str(tmp_path)}
    assert _exit_code_of(str(found), ("tool",), env) == 3
    gone = tmp_path / "gone"  # found before the wait, removed since: the search finds tool
    assert _exit_code_of(str(gone), ("tool",), env) == 3
    assert _exit_code_of(None, ("tool",), env) == 3
    assert _exit_code_of(None, ("nothing-of-that-name",), env) == 99
