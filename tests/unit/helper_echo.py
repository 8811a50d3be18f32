"""A helper process for tests/unit/hostkit/test_helper.py: a reaper whose ``sleep`` request
is answered once the child it forked exited, and whose ``echo`` is answered at once."""

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

    helper.serve(socket.socket(fileno=fd), {"sleep": sleep, "echo": echo}, reaper=True)
