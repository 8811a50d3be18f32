"""The engine backends on the real engines (Docker and Podman on runc, crun and cvbench-runtime,
LXC): start → READY → stop → remove, cold and warm, with network none and bridge; the container
runs what the other backends run (the engine's own OCI config checked against the reference
spec); memory with the engine's share; the OCI runtime underneath is the one asked for; clean-
up leaves nothing in the engine."""

from __future__ import annotations

import glob
import json
import os
import uuid

import pytest
from engine_inventory import EngineInventory, require

from harness import backends
from harness.backends.base import COLD, WARM, InstanceSpec
from harness.backends.containers import container_spec
from harness.backends.engines import common
from hostkit.procs import running
from runtime import cgroups
from runtime.oci import cli

pytestmark = [pytest.mark.root]

CASES = [("docker", {}), ("docker", {"runtime": "crun"}), ("docker-ours", {}), ("podman", {}),
         ("podman", {"runtime": "runc"}), ("podman-ours", {}), ("lxc", {})]
IDS = ["docker-runc", "docker-crun", "docker-ours", "podman-crun", "podman-runc", "podman-ours",
       "lxc"]
# The engines that hand an OCI config to a runtime (LXC has none: its config is checked in
# the unit tests).
OCI_CASES = [case for case in CASES if case[0] != "lxc"]
OCI_IDS = [name for name in IDS if name != "lxc"]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def engine(request, session_state_dir, built_image):
    """One prepared backend per case for the module's tests (an engine's set-up takes a
    second or so); its clean-up must leave the engine as it was."""
    name, options = request.param
    previous = os.environ.get("CVBENCH_STATE_DIR")
    os.environ["CVBENCH_STATE_DIR"] = str(session_state_dir)
    try:
        require(name)
        before = EngineInventory.take(session_state_dir)
        backend = backends.create(name, **options)
        backend.prepare(built_image)
        try:
            yield backend
        finally:
            backend.cleanup()
        assert EngineInventory.take(session_state_dir).leftovers(before) == {}
    finally:
        if previous is None:
            os.environ.pop("CVBENCH_STATE_DIR", None)
        else:
            os.environ["CVBENCH_STATE_DIR"] = previous


def _spec(image, index: int, network: str = "none") -> InstanceSpec:
    """A container named for this test process, index and a random tag (a test that failed
    before its remove leaves no name for the next test to trip over)."""
    return InstanceSpec(name=f"cvbench-it-{os.getpid()}-{index}-{uuid.uuid4().hex[:6]}",
                        image=image, memory_limit_mib=64, pids_limit=64, cpu_limit=0.5,
                        network=network)


def _interfaces(pid: int) -> set[str]:
    with open(f"/proc/{pid}/net/dev") as handle:
        return {line.split(":")[0].strip() for line in handle.readlines()[2:]}


def test_start_ready_stop_remove_cold_and_warm_none_and_bridge(engine, built_image) -> None:
    index = 0
    for network in ("none", "bridge"):
        for variant in (COLD, WARM):
            index += 1
            spec = _spec(built_image, index, network)
            if variant == WARM:
                instance = engine.create(spec)
                assert instance.variant == WARM
                engine.resume(instance)
            else:
                instance = engine.start(spec)
            try:
                engine.wait_ready(instance, 30)
                memory = engine.memory(instance)
                init = engine._init(instance.handle)
                assert init and running(init)
                interfaces = _interfaces(init)
                assert ("eth0" in interfaces) == (network == "bridge"), interfaces
                assert memory.pss and memory.cgroup and memory.monitor_pss, memory
                assert memory.pss > memory.monitor_pss
                engine.stop(instance)
                assert not running(init)
            except BaseException:
                engine._discard(instance)  # stop and remove, so the next case starts clean
                raise
            engine.remove(instance)
            assert instance.name not in engine.live


def test_the_engine_samples_its_daemons_once_per_pass(engine, built_image) -> None:
    instances = [engine.start(_spec(built_image, i)) for i in (1, 2)]
    try:
        for instance in instances:
            engine.wait_ready(instance, 30)
        engine.gauge._last = 0.0
        first, second = (engine.memory(instance) for instance in instances)
        assert first.engine_pss and first.engine_pss > 1 << 20
        assert second.engine_pss is None
    finally:
        for instance in instances:
            engine.stop(instance)
            engine.remove(instance)


def _oci_config(engine, instance) -> dict:
    if engine.name.startswith("docker"):
        # the containerd dockerd started itself (hand-started dockerd), or the host's
        # containerd service (docker.service under systemd)
        patterns = [f"{root}/io.containerd.runtime.v2.task/moby/{instance.handle.id}/config.json"
                    for root in ("/run/docker/containerd/daemon", "/run/containerd")]
    else:
        patterns = ["/var/lib/containers/storage/overlay-containers/"
                    f"{instance.handle.id}/userdata/config.json"]
    (path,) = [found for pattern in patterns for found in glob.glob(pattern)]
    with open(path) as handle:
        return json.load(handle)


@pytest.mark.parametrize("engine", OCI_CASES, ids=OCI_IDS, indirect=True)
def test_the_engine_runs_the_reference_spec_on_the_runtime_asked_for(engine,
                                                                       built_image) -> None:
    spec = _spec(built_image, 1)
    instance = engine.start(spec)
    try:
        engine.wait_ready(instance, 30)
        config, reference = _oci_config(engine, instance), container_spec(spec).to_oci()
        linux, want = config["linux"], reference["linux"]
        assert sorted(n["type"] for n in linux["namespaces"]) == sorted(
            n["type"] for n in want["namespaces"])
        assert sorted(linux["maskedPaths"]) == sorted(want["maskedPaths"])
        assert sorted(linux["readonlyPaths"]) == sorted(want["readonlyPaths"])
        for kind in ("bounding", "effective", "permitted"):
            assert sorted(config["process"]["capabilities"][kind]) == sorted(
                reference["process"]["capabilities"][kind])
        assert config["process"]["noNewPrivileges"] is True
        assert linux["resources"]["memory"]["limit"] == 64 << 20
        assert linux["resources"]["pids"]["limit"] == 64
        assert linux["resources"]["cpu"]["quota"] == 50000
        assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
        if engine.name.startswith("docker"):
            inspected = engine.api.inspect_container(instance.handle.id)
            assert inspected["HostConfig"]["Runtime"] == engine.runtime
            # dockerd gives every runtime the shim's runc root; crun keeps a "status" file in
            # its container's state directory, runc a "state.json", cvbench-runtime a
            # "record.json"
            state = f"/run/docker/runtime-runc/moby/{instance.handle.id}"
            marker = {"crun": "status", "runc": "state.json", "cvbench-runtime": "record.json"}
            assert os.path.exists(os.path.join(state, marker[engine.runtime])), os.listdir(state)
        else:
            assert engine.describe()["oci_runtime"] == engine.runtime
            # crun runs through its v1 view on hybrid hosts only (it refuses them as it is)
            wrapped = engine.runtime == "crun" and cgroups.detect_mode() == "hybrid"
            assert os.path.basename(engine.describe()["oci_runtime_path"]) == (
                "crun-v1view" if wrapped else engine.runtime)
        if engine.name.endswith("-ours"):  # a cvbench-runtime (podman-ours: the installed
            # one; docker-ours: the one dockerd was started with), and its version
            path = engine.describe()["oci_runtime_path"]
            assert os.path.basename(path) == "cvbench-runtime" and os.path.isabs(path), path
            if engine.name == "podman-ours":
                assert path == str(common.ours_runtime())
            assert cli.VERSION in engine.describe()["oci_runtime_version"]
    finally:
        engine.stop(instance)
        engine.remove(instance)


def test_describe_says_what_runs_and_what_differs(engine) -> None:
    facts = engine.describe()
    assert set(facts["method"]["variants"]) == {COLD, WARM}
    assert facts["security"]["differences"]
    assert facts["version"]
    if engine.name != "lxc":
        assert facts["oci_runtime"] == engine.runtime and facts["oci_runtime_version"]
        assert facts["image"]["digest"] and facts["image"]["id"]
        # the engine's own report of its cgroup manager, the one crun and runc use too (on a
        # systemd host as well: set-up configures it, the daemon says so)
        assert facts["cgroup_manager"] == "cgroupfs"
