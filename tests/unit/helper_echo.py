"""A helper process for tests/unit/hostkit/test_helper.py: a reaper whose ``sleep`` request
is answered once the child it forked exited, whose ``echo`` is answered at once, and whose
``orphan`` leaves it a grandchild (its child exits at once) that exits after ``seconds``
with ``code``: the pid is the answer, the exit code the reaper's own ``exit_status``'s."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from hostkit import helper


def main(fd: int, prefix: str) -> None:
    def sleep(request: helper.Request) -> helper.Later:
        pid = os.fork()
        if pid == 0:
            time.sleep(request.message["seconds"])
            os._exit(request.message["code"])
        return helper.Later(pid, lambda code: {"code": code})

    def echo(request: helper.Request) -> dict[str, Any]:
        return {"text": prefix + request.message["text"], "fds": len(request.fds)}

    def orphan(request: helper.Request) -> dict[str, Any]:
        read_fd, write_fd = os.pipe()
        child = os.fork()
        if child == 0:
            grandchild = os.fork()
            if grandchild == 0:
                os.close(write_fd)  # the answer comes at once, not at its exit
                time.sleep(request.message["seconds"])
                os._exit(request.message["code"])
            os.write(write_fd, str(grandchild).encode())
            os._exit(0)
        os.close(write_fd)
        os.waitpid(child, 0)
        with os.fdopen(read_fd, "rb") as handle:
            return {"pid": int(handle.read())}

    helper.serve(socket.socket(fileno=fd), {"sleep": sleep, "echo": echo, "orphan": orphan},
                 reaper=True)
