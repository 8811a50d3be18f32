"""The QMP monitor against a scripted peer on its socket: arguments, descriptors handed over
with a command, and events kept while waiting for a reply."""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest

from vm.monitor import MonitorError, QmpMonitor


def _peer(path, script, seen, hold):
    """Connect as QEMU does, greet, then for each command received send ``script``'s lines;
    close once ``hold`` is set."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(path))
    conn.sendall(b'{"QMP": {"version": {}}}\n')
    stream = conn.makefile("rb")
    for replies in script:
        message, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
        while not message.endswith(b"\n"):
            message += stream.readline()
        seen.append((json.loads(message), [os.readlink(f"/proc/self/fd/{fd}") for fd in fds]))
        for fd in fds:
            os.close(fd)
        conn.sendall(b"".join(json.dumps(reply).encode() + b"\n" for reply in replies))
    hold.wait(10)
    stream.close()
    conn.close()


@pytest.fixture
def monitor(tmp_path):
    qmp = QmpMonitor(tmp_path / "qmp.sock")
    yield qmp
    qmp.close()


def _run(monitor, script, hold=None):
    seen: list = []
    if hold is None:  # nothing to hold for: the peer closes after its script
        hold = threading.Event()
        hold.set()
    thread = threading.Thread(target=_peer, args=(monitor.path, script, seen, hold),
                              daemon=True)
    thread.start()
    monitor.connect(5)
    return thread, seen


def test_events_before_a_reply_are_kept_for_wait_event(monitor, tmp_path) -> None:
    state = tmp_path / "guest.state"
    state.write_bytes(b"x")
    migration = {"event": "MIGRATION", "data": {"status": "active"}}
    done = {"event": "MIGRATION", "data": {"status": "completed"}}
    thread, seen = _run(monitor, [
        [{"return": {}}],  # qmp_capabilities
        [{"return": {}}],  # getfd
        [migration, {"return": {}}, done],  # migrate-incoming: an event before, one after
    ])
    with open(state, "rb") as handle:
        monitor.execute("getfd", {"fdname": "s"}, fds=[handle.fileno()])
    monitor.execute("migrate-incoming", {"uri": "fd:s"})
    assert monitor.events == [migration]
    event = monitor.wait_event("MIGRATION", lambda data: data["status"] == "completed", 5)
    assert event == done and monitor.events == []
    thread.join(5)
    commands = [message for message, _ in seen]
    assert commands[1] == {"execute": "getfd", "arguments": {"fdname": "s"}}
    assert seen[1][1] == [str(state)]  # the descriptor went with the command
    assert commands[2] == {"execute": "migrate-incoming", "arguments": {"uri": "fd:s"}}


def test_an_error_reply_and_a_missing_event_are_monitor_errors(monitor) -> None:
    hold = threading.Event()  # the peer stays connected, sending nothing, until set
    thread, _ = _run(monitor, [[{"return": {}}],
                               [{"error": {"desc": "Migration is disabled"}}]], hold)
    with pytest.raises(MonitorError, match="QMP migrate: Migration is disabled"):
        monitor.execute("migrate", {"uri": "fd:s"})
    with pytest.raises(MonitorError, match="no QMP event MIGRATION within 0.2s"):
        monitor.wait_event("MIGRATION", lambda data: True, 0.2)
    hold.set()
    thread.join(5)
