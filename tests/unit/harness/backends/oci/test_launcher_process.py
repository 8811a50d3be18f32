"""The OCI launcher's timings and overlay handling, and the bundle's removal, from which the
OCI backends tell the harness's own share of a start, stop and clean-up (pure: no runtime, no
root)."""

from __future__ import annotations

import json
import os
import socket

import pytest

from harness.backends.oci import launcher_process
from harness.backends.oci.bundle import Bundle
from harness.backends.oci.launcher import Timing


def test_the_harness_share_of_a_call_is_the_call_less_the_runtime_command() -> None:
    timing = Timing(call_s=0.010, command_s=0.008, mount_s=0.0003, unmount_s=0.0001)
    assert timing.harness_s == pytest.approx(0.002)
    assert Timing(call_s=0.001, command_s=0.0012).harness_s == 0.0  # clocks apart: never < 0


def _server(monkeypatch: pytest.MonkeyPatch, events: list[str]
            ) -> tuple[launcher_process.Server, socket.socket]:
    """A launcher's server without its process: replies go to the returned socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server = object.__new__(launcher_process.Server)
    server.sock = theirs
    server.pending = {}
    monkeypatch.setattr(launcher_process, "mount_overlay",
                        lambda target, options: events.append(f"mount {target}"))
    monkeypatch.setattr(launcher_process, "unmount", lambda target: events.append(
        f"unmount {target}"))
    original = server.reply
    monkeypatch.setattr(server, "reply", lambda message: (events.append("reply"),
                                                          original(message)))
    return server, ours


def test_the_launcher_unmounts_its_overlay_before_it_answers(monkeypatch) -> None:
    events: list[str] = []
    server, harness_end = _server(monkeypatch, events)
    command = launcher_process.Command(7, overlay_target="/bundle/rootfs", spawned_ns=1,
                                       mount_ns=250_000)
    server.finish(command, 0)
    assert events == ["unmount /bundle/rootfs", "reply"]
    answer = json.loads(harness_end.recv(4096))
    assert answer["id"] == 7 and answer["rc"] == 0 and answer["mount_ns"] == 250_000
    assert answer["command_ns"] > 0 and answer["unmount_ns"] >= 0


def test_a_command_without_an_overlay_is_answered_with_its_time_only(monkeypatch) -> None:
    events: list[str] = []
    server, harness_end = _server(monkeypatch, events)
    server.finish(launcher_process.Command(3, spawned_ns=1), 1)
    assert events == ["reply"]
    answer = json.loads(harness_end.recv(4096))
    assert (answer["rc"], answer["mount_ns"], answer["unmount_ns"]) == (1, 0, 0)


def test_an_overlay_whose_command_did_not_start_is_unmounted_and_the_fds_closed(
        monkeypatch, tmp_path) -> None:
    events: list[str] = []
    server, _ = _server(monkeypatch, events)
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(3)]
    request = {"id": 1, "op": "spawn", "argv": [str(tmp_path / "no-such-runtime")],
               "overlay": {"target": "/bundle/rootfs", "data": "lowerdir=/l"}}
    with pytest.raises(OSError):
        server.start(request, fds)
    assert events == ["mount /bundle/rootfs", "unmount /bundle/rootfs"]
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_command_the_launcher_spawns_is_timed_from_the_spawn(monkeypatch) -> None:
    events: list[str] = []
    server, _ = _server(monkeypatch, events)
    fds = [os.open(os.devnull, os.O_RDWR) for _ in range(3)]
    pid, command = server.start({"id": 2, "op": "spawn", "argv": ["/bin/true"]}, fds)
    try:
        assert command.request_id == 2 and command.spawned_ns > 0
        assert command.overlay_target is None and command.mount_ns == 0 and events == []
    finally:
        os.waitpid(pid, 0)


def test_a_bundle_is_removed_by_name_and_whole_where_the_container_wrote(
        monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    for name, written in (("cvbench-unit-1", False), ("cvbench-unit-2", True)):
        bundle = Bundle.for_name(name)
        bundle.make({"ociVersion": "1.0.2"})
        (bundle.work / "work").mkdir(mode=0)  # what the overlay makes
        bundle.pid_file.write_text("1")
        bundle.log.write_text("")
        if written:
            (bundle.upper / "tmp").mkdir()
            (bundle.upper / "tmp" / "file").write_text("x")
        bundle.remove()
        assert not bundle.dir.exists()
    Bundle.for_name("cvbench-unit-3").remove()  # nothing there: nothing to do
