"""The ``ours`` harness backend and the ``cvbench ctr`` commands, end to end."""

from __future__ import annotations

import argparse
import os
import uuid

import pytest

from harness.backends.base import COLD, WARM, Backend, BackendError, InstanceSpec, NotReady
from harness.backends.ours import OursBackend
from hostkit.procs import wait_exit
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
    assert set(description["method"]["variants"]) == {COLD, WARM}
    assert "memory" in description["cgroup_controllers"]
    seccomp = description["security"]["seccomp"]
    assert seccomp["default_action"] == "SCMP_ACT_ERRNO" and len(seccomp["profile_sha256"]) == 64
    assert description["security"]["no_new_privileges"] is True


def test_cold_start_makes_no_spare(backend, built_image):
    instance = backend.start(InstanceSpec(name=name(), image=built_image))
    backend.wait_ready(instance, 10)
    assert backend.runtime.server.request({"op": "ping"})["spares"] == []
    backend.stop(instance)
    backend.remove(instance)
    assert backend.runtime.server.request({"op": "ping"})["spares"] == []


def test_warm_create_then_resume(backend, built_image):
    assert backend.variants == (COLD, WARM)
    instance = backend.create(InstanceSpec(name=name(), image=built_image, memory_limit_mib=64))
    spare = instance.handle.spare
    assert instance.variant == WARM and not instance.pids and spare
    # before the clock the spare already has namespaces of its own and the cgroups exist
    for kind in ("net", "mnt", "uts", "ipc", "pid"):
        assert os.readlink(f"/proc/{spare}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}")
    assert backend.runtime.cgroups.exists(instance.handle.cgroup)
    backend.resume(instance)
    assert instance.pids == [spare]
    backend.wait_ready(instance, 10)
    assert spare in backend.runtime.pids(instance.handle)
    backend.stop(instance)
    backend.remove(instance)
    assert not backend.live

    unused = backend.create(InstanceSpec(name=name(), image=built_image))
    spare = unused.handle.spare
    backend.remove(unused)  # never resumed: its spare ends with it
    assert wait_exit(spare, 5)
    assert backend.runtime.server.request({"op": "ping"})["spares"] == []
    assert not backend.runtime.cgroups.exists(unused.handle.cgroup)


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
    with pytest.raises(SystemExit) as exit_info:  # refused while parsing: no such container
        _ctr("rm", n)
    assert exit_info.value.code == 2
    assert f"unknown container '{n}'" in capsys.readouterr().err
