"""The ``ours`` harness backend and the ``cvbench ctr`` commands, end to end."""

from __future__ import annotations

import argparse
import uuid

import pytest

from harness.backends.base import Backend, BackendError, InstanceSpec, NotReady
from harness.backends.ours import OursBackend
from runtime import cli

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]


def name() -> str:
    return f"cvbench-test-be-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def backend(state_dir, built_image):
    backend = OursBackend()
    backend.prepare(built_image)
    yield backend
    backend.cleanup()


def test_backend_cycle_and_memory(backend, built_image):
    assert isinstance(backend, Backend)
    spec = InstanceSpec(name=name(), image=built_image, memory_limit_mib=64, pids_limit=32)
    instance = backend.start(spec)
    assert instance.pids and instance.backend == "ours"
    backend.wait_ready(instance, 10)
    sample = backend.memory(instance)
    assert sample.pss and sample.uss and sample.rss and sample.cgroup
    assert sample.uss <= sample.pss <= sample.rss
    backend.stop(instance)
    backend.remove(instance)
    assert not backend.live
    description = backend.describe()
    assert description["runtime"] == "cvbench" and description["cgroup_mode"] in (
        "v1", "v2", "hybrid"
    )  # fmt: skip


def test_backend_bridge_and_host_networks(backend, built_image):
    import os

    for network in ("bridge", "host"):
        instance = backend.start(InstanceSpec(name=name(), image=built_image, network=network))
        backend.wait_ready(instance, 20)
        container_netns = os.readlink(f"/proc/{instance.pids[0]}/ns/net")
        shares_host_netns = container_netns == os.readlink("/proc/self/ns/net")
        if network == "host":
            assert shares_host_netns
        else:
            assert not shares_host_netns and instance.handle.net is not None
            assert instance.handle.net.address  # a veth into cvbench0 with an address
        backend.stop(instance)
        backend.remove(instance)


def test_backend_errors(backend, built_image):
    with pytest.raises(BackendError, match="below the minimum"):
        backend.start(InstanceSpec(name=name(), image=built_image, memory_limit_mib=1))
    clash = InstanceSpec(name=name(), image=built_image)
    first = backend.start(clash)
    with pytest.raises(BackendError, match="already exists"):
        backend.start(clash)
    backend.stop(first)
    backend.remove(first)
    spec = InstanceSpec(name=name(), image=built_image)
    instance = backend.start(spec)
    with pytest.raises(NotReady):
        backend.wait_ready(instance, 0)
    backend.stop(instance)
    backend.remove(instance)


def _ctr(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cvbench")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ctr", *argv])
    return args.func(args)


def test_ctr_run_ls_stop_rm(state_dir, built_image, capsys):
    n = name()
    assert _ctr("run", "--name", n, "--memory", "32") == 0
    assert capsys.readouterr().out.startswith(n)
    assert _ctr("run", "--name", n) == 2
    assert "already exists" in capsys.readouterr().err
    assert _ctr("ls") == 0
    listing = capsys.readouterr().out
    assert any(line.split()[:2] == [n, "running"] for line in listing.splitlines())
    assert _ctr("rm", n) == 2  # still running
    capsys.readouterr()
    assert _ctr("stop", n) == 0
    assert _ctr("rm", n) == 0
    assert _ctr("rm", n) == 2
    assert "no container named" in capsys.readouterr().err
