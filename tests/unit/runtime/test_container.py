"""Pure parts of the runtime: address leases, veth names, container state round trip, READY
parsing, and the ``ctr`` command line (no root needed). The launch plan: test_runtime_plan."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import pytest

from hostkit.procs import proc_start_time
from runtime import cli, network
from runtime.container import Container, ContainerError, ExitInfo, NotReadyError
from runtime.readiness import ERROR_PREFIX, read_ready, read_to_end
from runtime.scopes import cgroup_parent
from runtime.spec import default_spec
from runtime.state import load


class FakeImage:
    rootfs = Path("/images/abc/rootfs")
    digest = "cd" * 32


def test_veth_names_fit_ifnamsiz():
    name = network.veth_name("/var/lib/cvbench/containers/cvbench-some-long-name-0001")
    assert name.startswith("cvbench-") and len(name) <= 15
    assert name == network.veth_name("/var/lib/cvbench/containers/cvbench-some-long-name-0001")


def test_address_leases_are_unique_and_released(tmp_path, monkeypatch):
    monkeypatch.setenv("CVBENCH_NET_LEASES", str(tmp_path / "leases"))
    owner = tmp_path / "c1"
    owner.mkdir()
    addresses = {network.allocate_address(str(owner)) for _ in range(50)}
    assert len(addresses) == 50
    assert network.GATEWAY not in addresses
    assert all(a.startswith("10.213.") for a in addresses)
    assert network.stale_leases() == []
    owner.rmdir()
    assert sorted(network.stale_leases()) == sorted(addresses)
    for address in addresses:
        network.release_address(address)
    assert not list((tmp_path / "leases").iterdir())


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


def test_cgroup_parent_depends_on_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "a"))
    first = cgroup_parent()
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "b"))
    assert first != cgroup_parent() and first.startswith("cvbench-")


def test_proc_start_time():
    assert proc_start_time(os.getpid()) > 0
    assert proc_start_time(2**22 + 1) is None


def _pipe_with(data: bytes, close: bool = True) -> int:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    if close:
        os.close(write_fd)
    return read_fd


def _read_ready(fd: int, timeout: float, name: str) -> None:
    read_ready(fd, timeout, name, NotReadyError, ERROR_PREFIX)


def test_read_ready():
    fd = _pipe_with(b"starting\nREADY\n", close=False)
    _read_ready(fd, 1.0, "c")
    os.close(fd)
    fd = _pipe_with(b"cvbench-error: FileNotFoundError: /nope\n")
    with pytest.raises(NotReadyError, match="launch failed: FileNotFoundError"):
        _read_ready(fd, 1.0, "c")
    os.close(fd)
    fd = _pipe_with(b"bye")
    with pytest.raises(NotReadyError, match="exited before READY.*bye"):
        _read_ready(fd, 1.0, "c")
    os.close(fd)
    fd = _pipe_with(b"", close=False)
    with pytest.raises(NotReadyError, match="no READY within"):
        _read_ready(fd, 0.05, "c")
    os.close(fd)


def test_read_to_end():
    fd = _pipe_with(b"one\ntwo")
    assert read_to_end(fd, 1.0) == b"one\ntwo"
    os.close(fd)
    fd = _pipe_with(b"partial", close=False)
    assert read_to_end(fd, 0.05) is None  # the writer is still open
    os.close(fd)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cvbench")
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_parses_run_ls_stop_rm(tmp_path, monkeypatch):
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    for name in ("a", "b"):  # stop and rm take the names of existing containers only
        (tmp_path / "containers" / name).mkdir(parents=True)
    parser = _parser()
    args = parser.parse_args(
        [
            "ctr",
            "run",
            "--name",
            "cvbench-a",
            "--memory",
            "64",
            "--pids",
            "10",
            "--cpus",
            "0.5",
            "--network",
            "bridge",
            "--",
            "/bin/sh",
        ]
    )
    assert (args.func, args.name, args.memory, args.pids, args.cpus, args.network) == (
        cli.cmd_run, "cvbench-a", 64, 10, 0.5, "bridge"
    )  # fmt: skip
    assert parser.parse_args(["ctr", "ls"]).func is cli.cmd_ls
    assert parser.parse_args(["ctr", "stop", "a", "b"]).names == ["a", "b"]
    assert parser.parse_args(["ctr", "rm", "-f", "a"]).force


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    args = _parser().parse_args(["ctr", "run", "--image", "nosuch"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown image" in err


def test_container_error_is_an_exception_with_a_message():
    assert str(ContainerError("a container named 'x' already exists")).startswith("a container")
