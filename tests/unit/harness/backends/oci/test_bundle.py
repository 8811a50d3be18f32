"""config.json generation and cgroup paths of the crun/runc backends (pure: no runtime, no root)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.backends.base import BackendError, InstanceSpec
from harness.backends.oci import cgroup
from harness.backends.oci.bundle import Bundle, build_config
from harness.backends.oci.cgroup import cgroups_path
from imagestore.image import Image
from runtime import cgroups, devices
from runtime.spec import default_spec

IMAGE = Image(name="default", digest="0" * 64, rootfs=Path("/nonexistent/rootfs"))


def spec(**changes) -> InstanceSpec:
    return InstanceSpec(name="cvbench-unit-1", image=IMAGE, **changes)


def namespaces(config: dict) -> set[str]:
    return {entry["type"] for entry in config["linux"]["namespaces"]}


def test_defaults_isolate_like_ours():
    config = build_config(spec())
    assert namespaces(config) == {"pid", "mount", "uts", "ipc", "network", "cgroup"}
    assert config["hostname"] == "cvbench-unit-1"
    assert config["process"]["args"] == ["/init"]
    assert config["process"]["terminal"] is False
    assert config["root"] == {"path": "rootfs", "readonly": False}
    # ours' layout (runtime.scopes): crc32("cvbench-unit-1") % 16 == 15
    assert config["linux"]["cgroupsPath"] == "/cvbench-oci/shard-f/cvbench-unit-1"
    devices = config["linux"]["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}  # deny all first
    assert all(rule["allow"] for rule in devices[1:])
    assert not {"memory", "pids", "cpu"} & set(config["linux"]["resources"])  # unless asked
    assert {m["destination"] for m in config["mounts"]} >= {"/proc", "/dev"}
    json.dumps(config)  # serialisable as is


def test_same_isolation_as_ours():
    ours = default_spec(IMAGE, "cvbench-unit-1", memory_limit_mib=64).to_oci()
    config = build_config(spec(memory_limit_mib=64))
    for key in ("process", "mounts", "hostname"):
        assert config[key] == ours[key]
    for key in ("namespaces", "maskedPaths", "readonlyPaths"):
        assert config["linux"][key] == ours["linux"][key]
    # the limit, and swap as ours applies it: memory+swap = the limit (no swap)
    assert config["linux"]["resources"]["memory"] == {
        **ours["linux"]["resources"]["memory"], "swap": 64 << 20}


def test_limits_map_to_oci_resources():
    resources = build_config(spec(memory_limit_mib=64, pids_limit=100, cpu_limit=0.5))["linux"][
        "resources"
    ]
    assert resources["memory"] == {"limit": 64 * 1024 * 1024, "swap": 64 * 1024 * 1024}
    assert resources["pids"] == {"limit": 100}
    assert resources["cpu"] == {"quota": 50_000, "period": 100_000}


def test_impossible_limits_are_refused_with_the_field_named():
    with pytest.raises(BackendError, match="cpu"):
        build_config(spec(cpu_limit=0.001))
    with pytest.raises(BackendError, match="memory"):
        build_config(spec(memory_limit_mib=1))


def test_host_network_has_no_netns_and_no_sysfs_mount():
    config = build_config(spec(network="host"))
    assert "network" not in namespaces(config)
    assert "/sys" not in {m["destination"] for m in config["mounts"]}


def test_bridge_network_joins_the_namespace_cvbench_wired():
    with pytest.raises(BackendError, match="network namespace"):
        build_config(spec(network="bridge"))
    config = build_config(spec(network="bridge"), netns="/proc/1/fd/7")
    network = [n for n in config["linux"]["namespaces"] if n["type"] == "network"]
    assert network == [{"type": "network", "path": "/proc/1/fd/7"}]
    assert config["annotations"]["cvbench.network"] == "bridge"


def test_environment_and_volume_reach_the_container(tmp_path):
    config = build_config(dataclasses.replace(spec(), env=("CVBENCH_TOKEN=abc",),
                                              volume=tmp_path))
    assert "CVBENCH_TOKEN=abc" in config["process"]["env"]
    assert {"destination": "/data", "type": "bind", "source": str(tmp_path),
            "options": ["rbind", "rw"]} in config["mounts"]


def test_name_must_carry_the_prefix():
    with pytest.raises(BackendError, match="cvbench-"):
        build_config(InstanceSpec(name="other-1", image=IMAGE))


def test_bundle_layout_lives_under_the_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    bundle = Bundle.for_name("cvbench-unit-1")
    assert bundle.dir == tmp_path / "oci" / "cvbench-unit-1"
    assert bundle.config.parent == bundle.rootfs.parent == bundle.dir
    assert cgroups_path("cvbench-unit-1").startswith("/cvbench-")


def test_cgroups_are_looked_for_in_every_hierarchy(tmp_path):
    """crun and runc make a container's cgroup in every hierarchy, not only memory/pids/cpu."""
    for hierarchy in ("blkio", "cpu,cpuacct", "memory", "systemd", "unified"):
        (tmp_path / hierarchy / cgroup.path("cvbench-unit-1")).mkdir(parents=True)
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")  # an alias is not a hierarchy of its own
    driver = cgroups.every_hierarchy("hybrid", root=tmp_path)
    path = cgroup.path("cvbench-unit-1")
    assert driver.directories(path) == [
        tmp_path / h / path for h in ("memory", "blkio", "cpu,cpuacct", "systemd", "unified")
    ]
    driver.remove(path)
    assert driver.remove_parent(cgroup.PARENT)
    assert not any(tmp_path.glob(f"*/{cgroup.PARENT}"))


def test_cgroups_on_a_v2_host_are_one_directory(tmp_path):
    driver = cgroups.every_hierarchy("v2", root=tmp_path)
    assert driver.directories(cgroup.path("cvbench-unit-1")) == [
        tmp_path / "cvbench-oci" / "shard-f" / "cvbench-unit-1"
    ]


def _rule_line(rule: dict) -> str:
    """A device rule as devices.list shows it (``c 1:3 rwm``)."""
    major, minor = rule.get("major", "*"), rule.get("minor", "*")
    return f"{rule['type']} {major}:{minor} {rule['access']}"


def test_device_rules_are_exactly_those_ours_applies():
    """config.json carries the rules ours writes for the same spec (the spec's deny-all,
    then ours' default allow list, in ours' order): nothing more, nothing less."""
    ours = default_spec(IMAGE, "cvbench-unit-1")
    expected = [rule.to_oci() for rule in devices.container_rules(
        ours.linux.resources.devices)]
    assert build_config(spec())["linux"]["resources"]["devices"] == expected
    assert build_config(spec(memory_limit_mib=64))["linux"]["resources"]["devices"] == expected


def test_what_each_runtime_appends_leaves_ours_set():
    """What crun 1.8 and runc 1.1 wrote to devices.list on their own (read on a hybrid host):
    each list is within ours', so the rules each runtime appends to config.json's change
    nothing: every runtime allows ours' set."""
    crun = {"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm",
            "c 1:5 rwm", "c 1:9 rwm", "c 5:1 rwm", "c 136:* rwm", "c 5:2 rwm"}
    runc = {"b *:* m", "c *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
            "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm", "c 10:200 rwm", "c 136:* rwm"}
    configured = [devices.DeviceRule.from_oci(rule)
                  for rule in build_config(spec())["linux"]["resources"]["devices"]]
    ours = set(devices.v1_list(configured) or [])
    assert crun <= ours and runc <= ours
    assert {_rule_line(rule.to_oci()) for rule in configured[1:]} == ours


def test_bundle_make_writes_config_and_refuses_an_existing_one(monkeypatch, tmp_path):
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    bundle = Bundle.for_name("cvbench-unit-1")
    bundle.make({"ociVersion": "1.0.2"})  # no bundles' directory yet: made on the way
    assert json.loads(bundle.config.read_text()) == {"ociVersion": "1.0.2"}
    assert bundle.upper.is_dir() and bundle.work.is_dir() and bundle.rootfs.is_dir()
    with pytest.raises(BackendError, match="already exists"):
        bundle.make({})
    assert bundle.config.exists()  # somebody else's bundle is left alone
