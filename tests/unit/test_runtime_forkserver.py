"""The fork server's protocol (without spares, so no namespace is created here)."""

from __future__ import annotations

import os

import pytest

from runtime.forkserver import ForkServer, ForkServerError

pytestmark = pytest.mark.timeout(30)


def test_ping_reap_and_errors():
    server = ForkServer(spares=False)
    try:
        reply = server.request({"op": "ping"})
        assert reply["pid"] == server.pid != os.getpid()
        assert reply["spare"] is None
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
