"""The fork server's protocol, and spares made only on request (with no namespace, so that
nothing is created here)."""

from __future__ import annotations

import os

import psutil
import pytest

from hostkit.procs import wait_exit
from runtime.forkserver import TAG, ForkServer, ForkServerError

pytestmark = pytest.mark.timeout(30)

NO_NAMESPACES = {"op": "spare", "new_pid": False, "unshare": 0, "loopback": False}


def test_ping_reap_and_errors():
    server = ForkServer()
    try:
        reply = server.request({"op": "ping"})
        assert reply["pid"] == server.pid != os.getpid()
        assert reply["spares"] == []  # never one made on its own
        assert server.reap(os.getpid()) is None  # not its child
        with pytest.raises(ForkServerError, match="unknown op"):
            server.request({"op": "nope"})
        with pytest.raises(ForkServerError, match="KeyError"):
            server.request({"op": "launch"})
        with pytest.raises(ForkServerError, match=r"PlanError: plan: missing key\(s\) new_pid"):
            server.request({"op": "launch", "plan": {}})
        assert server.request({"op": "ping"})["pid"] == server.pid  # still serving
    finally:
        server.close()
    assert server.pid is None
    server.close()  # idempotent


def test_spares_are_made_on_request_and_discarded():
    server = ForkServer()
    try:
        first = server.request(NO_NAMESPACES)["pid"]
        second = server.request(NO_NAMESPACES)["pid"]
        assert server.request({"op": "ping"})["spares"] == sorted([first, second])
        assert os.path.exists(f"/proc/{first}")
        server.discard(first)
        assert server.request({"op": "ping"})["spares"] == [second]
        with pytest.raises(ForkServerError, match=f"LookupError: no spare {first}"):
            server.request({"op": "launch", "plan": {}, "spare": first})
        with pytest.raises(ForkServerError, match="must be booleans"):
            server.request({**NO_NAMESPACES, "loopback": 1})
        with pytest.raises(ForkServerError, match=r"overlay must be \[mount point, options\]"):
            server.request({**NO_NAMESPACES, "overlay": ["/only-a-mount-point"]})
        assert server.request({"op": "discard", "pid": 1})["status"] is None  # not a spare
    finally:
        server.close()
    assert wait_exit(second, 5)  # an unused spare ends with the server


def _servers_of_ours() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children():
        try:
            if TAG in child.cmdline():
                found.append(child)
        except psutil.Error:  # exited meanwhile
            pass
    return found


def test_a_start_in_the_background_is_over_once_closed():
    server = ForkServer()
    server.start_in_background()
    server.close()  # at once: the start is waited for, then its server stopped
    assert server.pid is None and _servers_of_ours() == []
    server.start_in_background()
    assert server.request({"op": "ping"})["pid"] == server.pid  # the request waits for it
    (started,) = _servers_of_ours()
    assert started.pid == server.pid
    server.close()
    assert _servers_of_ours() == []
