"""The OCI-subset spec: defaults, round trip through config.json, validation messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime import caps, seccomp
from runtime.spec import (
    DIGEST_ANNOTATION,
    NETWORK_ANNOTATION,
    SECCOMP_PROFILE_ANNOTATION,
    SECCOMP_SHA256_ANNOTATION,
    Spec,
    SpecError,
    default_spec,
)


class FakeImage:
    rootfs = Path("/images/abc/rootfs")
    digest = "ab" * 32


def test_default_spec_runs_init_with_limits():
    spec = default_spec(FakeImage(), "cvbench-a", memory_limit_mib=64, pids_limit=32, cpu_limit=0.5)
    assert spec.process.args == ["/init"]
    assert spec.hostname == "cvbench-a"
    assert spec.root.path == "/images/abc/rootfs"
    res = spec.linux.resources
    assert (res.memory_limit, res.pids_limit, res.cpu_quota, res.cpu_period) == (
        64 << 20,
        32,
        50000,
        100000,
    )
    assert {ns.type for ns in spec.linux.namespaces} == {
        "pid", "network", "mount", "ipc", "uts", "cgroup"
    }  # fmt: skip
    assert spec.network == "none"
    assert spec.annotations[DIGEST_ANNOTATION] == FakeImage.digest
    assert "CAP_SYS_ADMIN" not in spec.process.capabilities.bounding
    assert spec.process.no_new_privileges


def test_host_network_has_no_netns_and_no_sysfs():
    spec = default_spec(FakeImage(), "cvbench-h", network="host", sysfs=True)
    assert not spec.linux.has_namespace("network")
    assert spec.network == "host"
    assert all(m.type != "sysfs" for m in spec.mounts)


def test_sysfs_only_when_asked():
    assert all(m.type != "sysfs" for m in default_spec(FakeImage(), "cvbench-n").mounts)
    assert [m.destination for m in default_spec(FakeImage(), "cvbench-s", sysfs=True).mounts][
        -1
    ] == "/sys"


def test_round_trip_through_json():
    spec = default_spec(FakeImage(), "cvbench-r", memory_limit_mib=16, network="bridge")
    spec.process.rlimits = []
    data = json.loads(json.dumps(spec.to_oci()))
    again = Spec.from_oci(data)
    assert again == spec
    assert data["linux"]["resources"]["memory"] == {"limit": 16 << 20}
    assert data["annotations"][NETWORK_ANNOTATION] == "bridge"
    assert data["linux"]["maskedPaths"] and data["linux"]["readonlyPaths"]
    assert data["process"]["user"] == {"uid": 0, "gid": 0}  # no additionalGids: none at all


def test_additional_gids_round_trip_and_are_checked():
    spec = default_spec(FakeImage(), "cvbench-g")
    spec.process.additional_gids = [10, 4242]
    data = json.loads(json.dumps(spec.to_oci()))
    assert data["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [10, 4242]}
    assert Spec.from_oci(data).process.additional_gids == [10, 4242]
    data["process"]["user"]["additionalGids"] = [-1]
    with pytest.raises(SpecError, match="additionalGids"):
        Spec.from_oci(data)


def test_umask_round_trips_is_checked_and_defaults_to_0022_in_the_plan():
    spec = default_spec(FakeImage(), "cvbench-u")
    assert "umask" not in spec.to_oci()["process"]["user"]  # none given: 0022 applies
    spec.process.umask = 0o077
    data = json.loads(json.dumps(spec.to_oci()))
    assert data["process"]["user"]["umask"] == 63
    assert Spec.from_oci(data).process.umask == 0o077
    data["process"]["user"]["umask"] = 0o1000
    with pytest.raises(SpecError, match="umask"):
        Spec.from_oci(data)


def test_from_oci_ignores_unknown_keys_and_reads_crun_style_config():
    data = {
        "ociVersion": "1.0.2",
        "process": {"args": ["/bin/sh"], "cwd": "/", "terminal": False, "user": {"uid": 0}},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "x",
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}], "resources": {}},
        "somethingElse": 1,
    }
    spec = Spec.from_oci(data)
    assert spec.root.readonly
    assert spec.network == "host"
    assert spec.process.capabilities.bounding == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory_limit_mib": 1}, "below the minimum"),
        ({"memory_limit_mib": 1 << 30}, "exceeds the host"),
        ({"pids_limit": 0}, "pids.limit"),
        ({"cpu_limit": 1000.0}, "more than the host"),
        ({"cpu_limit": 0.001}, "below 1000"),
        ({"network": "overlay"}, "network"),
    ],
)
def test_impossible_limits_are_refused(kwargs, message):
    with pytest.raises(SpecError, match=message):
        default_spec(FakeImage(), "cvbench-x", **kwargs)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["process"].update(args=[]), "process.args"),
        (lambda d: d["process"].update(cwd="tmp"), "process.cwd"),
        (lambda d: d["linux"]["namespaces"].append({"type": "user"}), "user namespaces"),
        (lambda d: d["linux"]["namespaces"].append({"type": "time"}), "unknown type"),
        (lambda d: d["mounts"].append({"destination": "x", "type": "tmpfs"}), "not absolute"),
        (lambda d: d.pop("root"), "missing or malformed"),
    ],
)
def test_malformed_configs_name_the_field(mutate, message):
    data = default_spec(FakeImage(), "cvbench-m").to_oci()
    mutate(data)
    with pytest.raises(SpecError, match=message):
        Spec.from_oci(data)


def test_hostname_must_fit():
    with pytest.raises(SpecError, match="longer than 64"):
        default_spec(FakeImage(), "cvbench-" + "x" * 60)


def test_capability_masks():
    assert caps.mask(["CAP_CHOWN", "CAP_KILL"]) == 1 | 1 << 5
    assert caps.NUMBERS["CAP_SYS_ADMIN"] == 21
    with pytest.raises(ValueError, match="unknown capability"):
        caps.mask(["CAP_FLY"])


def test_default_spec_has_the_default_profiles_seccomp_section_and_deny_all_devices():
    spec = default_spec(FakeImage(), "cvbench-sc")
    profile = seccomp.load_profile()
    expected = seccomp.to_oci(profile, spec.process.capabilities.bounding)
    config = spec.to_oci()
    assert config["linux"]["seccomp"] == expected  # what crun and runc get in config.json
    assert config["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert spec.annotations[SECCOMP_PROFILE_ANNOTATION] == str(profile.path)
    assert spec.annotations[SECCOMP_SHA256_ANNOTATION] == profile.digest
    again = Spec.from_oci(json.loads(json.dumps(config)))
    assert again == spec and again.linux.seccomp.digest == spec.linux.seccomp.digest
    assert "seccomp" not in spec.to_oci(seccomp=False)["linux"]
    assert default_spec(FakeImage(), "cvbench-ns", seccomp=False).linux.seccomp is None


def test_seccomp_and_devices_round_trip_in_every_detail():
    section = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        ],
    }
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
    config = default_spec(FakeImage(), "cvbench-rt", seccomp=False).to_oci()
    config["linux"]["seccomp"] = section
    config["linux"]["resources"]["devices"] = rules
    spec = Spec.from_oci(config)
    assert spec.linux.seccomp.syscalls[1].args[0].value_two == 0
    assert spec.to_oci()["linux"]["seccomp"] == section
    assert spec.to_oci()["linux"]["resources"]["devices"] == rules
    config["linux"]["resources"]["devices"] = [{"allow": True, "type": "x"}]
    with pytest.raises(SpecError, match="device type 'x'"):
        Spec.from_oci(config)


def test_a_missing_profile_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("CVBENCH_SECCOMP_PROFILE", str(tmp_path / "none.json"))
    with pytest.raises(SpecError, match="missing: apt-get install golang-github-containers-common"):
        default_spec(FakeImage(), "cvbench-m")
