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
