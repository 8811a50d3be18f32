"""A container's state file: the round trip (the seccomp section named by its digest) and how
an exit is described (no root needed)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from runtime import network
from runtime.spec import default_spec
from runtime.state import Container, ExitInfo, load


class FakeImage:
    rootfs = Path("/images/abc/rootfs")
    digest = "cd" * 32


def test_container_state_round_trip(tmp_path):
    spec = default_spec(FakeImage(), "cvbench-s", memory_limit_mib=8)
    container = Container(
        name="cvbench-s",
        spec=spec,
        directory=tmp_path,
        cgroup="cvbench-x/cvbench-s",
        pid=123,
        pid_start=456,
        state="running",
        net=network.Attachment("cvbench-abcdefg", "10.213.1.2"),
        exit=ExitInfo(9, True),
    )
    container.save()
    again = load(tmp_path)
    assert again is not None
    assert (again.name, again.pid, again.net, again.exit) == (
        "cvbench-s",
        123,
        container.net,
        container.exit,
    )
    # the state file leaves the (large) seccomp section out and names it by its digest
    assert again.spec == dataclasses.replace(spec, linux=dataclasses.replace(spec.linux,
                                                                             seccomp=None))
    assert json.loads((tmp_path / "state.json").read_text())["seccomp"] == (
        spec.linux.seccomp.digest)
    assert load(tmp_path / "missing") is None


def test_exit_info_describes_oom_and_signals():
    assert "out of memory" in ExitInfo(9, True).describe()
    assert ExitInfo(9, False).describe() == "killed by signal SIGKILL"
    assert ExitInfo(3 << 8, False).code == 3
    assert ExitInfo(None, False).describe() == "exited"
