"""What the crun/runc backends report about themselves (pure: no runtime, no root):
the isolation profile from config.json, the cgroups a probe container got, the method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends.base import COLD, WARM, InstanceSpec
from harness.backends.crun import CrunBackend
from harness.backends.oci import cgroup, probe
from harness.backends.oci.bundle import build_config
from harness.backends.oci.profile import seccomp_summary, security
from harness.backends.runc import RuncBackend
from imagestore.image import Image
from runtime import devices

IMAGE = Image(name="default", digest="0" * 64, rootfs=Path("/nonexistent/rootfs"))
SECCOMP = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
           "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}


def test_security_of_the_generated_config():
    config = build_config(InstanceSpec(name="cvbench-unit-1", image=IMAGE))
    profile = security(config)
    assert profile["namespaces"] == ["cgroup", "ipc", "mount", "network", "pid", "uts"]
    assert "CAP_SYS_ADMIN" not in profile["capabilities"]["bounding"]
    assert profile["capabilities"]["effective"] == profile["capabilities"]["bounding"]
    assert "/proc/kcore" in profile["masked_paths"]
    assert "/proc/sys" in profile["readonly_paths"]
    assert profile["no_new_privileges"] is True
    seccomp = config["linux"].get("seccomp")
    assert profile["seccomp"] == seccomp_summary(seccomp)


def test_seccomp_summary_is_a_digest_of_the_section_whatever_its_key_order():
    summary = seccomp_summary(SECCOMP)
    assert summary is not None
    assert summary["default_action"] == "SCMP_ACT_ERRNO" and summary["rules"] == 1
    assert seccomp_summary(dict(reversed(list(SECCOMP.items())))) == summary
    assert seccomp_summary({**SECCOMP, "defaultAction": "SCMP_ACT_KILL"})["sha256"] != (
        summary["sha256"])
    assert seccomp_summary(None) is None


def test_probe_lists_hierarchies_and_sorted_device_rules(tmp_path):
    path = cgroup.path("cvbench-unit-1")
    for hierarchy in ("memory", "devices", "pids", "systemd"):
        (tmp_path / hierarchy / path).mkdir(parents=True)
    (tmp_path / "blkio").mkdir()  # a hierarchy the runtime did not use
    (tmp_path / "cpuacct").symlink_to("memory")  # an alias is not a hierarchy of its own
    (tmp_path / "devices" / path / "devices.list").write_text("c 1:3 rwm\nb *:* m\n")
    observed = probe.observe("cvbench-unit-1", root=tmp_path)
    assert observed.cgroup_controllers == ("devices", "memory", "pids", "systemd")
    assert observed.devices == ("b *:* m", "c 1:3 rwm")


def _v2_container(root: Path, name: str = "cvbench-unit-1") -> Path:
    directory = root / cgroup.path(name)
    directory.mkdir(parents=True)
    (directory / "cgroup.controllers").write_text("cpu memory pids\n")
    return directory


def test_probe_on_a_v2_host_lists_controllers_device_programs_and_their_rules(tmp_path):
    directory = _v2_container(tmp_path / "cgroup")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(build_config(InstanceSpec(name="cvbench-unit-1",
                                                           image=IMAGE))))
    asked = []

    def programs(path: Path) -> list[int]:
        asked.append(path)
        return [41]

    observed = probe.observe("cvbench-unit-1", root=tmp_path / "cgroup", config=config,
                             programs=programs)
    assert asked == [directory]
    described = observed.as_dict()
    assert described["cgroup_controllers"] == ["cpu", "memory", "pids"]
    assert [program["id"] for program in described["device_filter"]["programs"]] == [41]
    assert described["device_filter"]["programs"][0]["type"] == "cgroup_device"
    rules = json.loads(config.read_text())["linux"]["resources"]["devices"]
    expected = devices.v1_list([devices.DeviceRule.from_oci(rule) for rule in rules])
    assert described["devices"] == expected and {"c 1:3 rwm", "c 136:* rwm"} <= set(expected)


def test_probe_on_a_v2_host_without_a_device_program_reports_no_rules(tmp_path):
    _v2_container(tmp_path)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(build_config(InstanceSpec(name="cvbench-unit-1",
                                                           image=IMAGE))))
    observed = probe.observe("cvbench-unit-1", root=tmp_path, config=config,
                             programs=lambda path: [])
    assert observed.as_dict() == {
        "cgroup_controllers": ["cpu", "memory", "pids"], "devices": None,
        "device_filter": {"programs": [],
                          "devices_from": "config.json, compiled into the attached program "
                                          "by the runtime"}}


def _proc(tmp_path: Path, pid: int, text: str) -> Path:
    (tmp_path / "proc" / str(pid)).mkdir(parents=True)
    (tmp_path / "proc" / str(pid) / "cgroup").write_text(text)
    return tmp_path / "proc"


def test_limits_of_a_process_on_a_v2_host(tmp_path):
    proc = _proc(tmp_path, 7, f"0::{cgroup.cgroups_path('cvbench-unit-1')}\n")
    directory = _v2_container(tmp_path / "cgroup")
    for name, value in (("memory.max", "67108864"), ("pids.max", "32"),
                        ("cpu.max", "50000 100000")):
        (directory / name).write_text(value + "\n")
    assert probe.process_cgroups(7, proc) == {"": "/cvbench-oci/shard-f/cvbench-unit-1"}
    limits = probe.cgroup_limits(7, tmp_path / "cgroup", proc)
    assert limits == probe.CgroupLimits("v2", 64 << 20, 32, 50_000, 100_000)
    for name, value in (("memory.max", "max"), ("pids.max", "max"), ("cpu.max", "max 100000")):
        (directory / name).write_text(value + "\n")
    assert probe.cgroup_limits(7, tmp_path / "cgroup", proc) == probe.CgroupLimits(
        "v2", None, None, None, 100_000)


def test_limits_of_a_process_on_a_hybrid_host_come_from_the_v1_hierarchies(tmp_path):
    path = cgroup.cgroups_path("cvbench-unit-1")
    proc = _proc(tmp_path, 7, f"12:pids:{path}\n5:cpu,cpuacct:{path}\n4:memory:{path}\n"
                              f"1:name=systemd:{path}\n0::{path}\n")
    root = tmp_path / "cgroup"
    files = {"memory": {"memory.limit_in_bytes": "67108864"}, "pids": {"pids.max": "max"},
             "cpu": {"cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000"}}
    for controller, written in files.items():
        (root / controller / path.lstrip("/")).mkdir(parents=True)
        for name, value in written.items():
            (root / controller / path.lstrip("/") / name).write_text(value + "\n")
    (root / "unified" / path.lstrip("/")).mkdir(parents=True)  # runc's, with no controller
    assert set(probe.process_cgroups(7, proc)) == {"pids", "cpu", "cpuacct", "memory",
                                                    "systemd", ""}
    assert probe.cgroup_limits(7, root, proc) == probe.CgroupLimits("v1", 64 << 20, None, None,
                                                                    100_000)
    (root / "memory" / path.lstrip("/") / "memory.limit_in_bytes").write_text(
        "9223372036854771712\n")  # v1's "no limit"
    assert probe.cgroup_limits(7, root, proc).memory_bytes is None


def test_limits_of_a_process_in_no_container_cgroup_is_a_lookup_error(tmp_path):
    proc = _proc(tmp_path, 7, "0::/\n")
    (tmp_path / "cgroup").mkdir()
    with pytest.raises(LookupError, match="pid 7 is in no v1 memory cgroup and no v2 cgroup"):
        probe.cgroup_limits(7, tmp_path / "cgroup" / "missing", proc)


def test_crun_and_runc_both_use_the_cgroupfs_manager_passed_explicitly():
    crun, runc = CrunBackend(binary="/nonexistent/crun"), RuncBackend()
    assert crun._argv("state", "x")[3:] == ["--cgroup-manager=cgroupfs", "state", "x"]
    assert "--systemd-cgroup" not in runc._argv("state", "x")
    assert runc._argv("state", "x")[3:] == ["state", "x"]
    for backend in (crun, runc):
        described = backend.describe()
        assert described["cgroup_manager"] == "cgroupfs"
        assert described["cgroup_manager_args"] == cgroup.manager_args(backend.runtime)


def test_crun_needs_a_private_cgroup_view_on_hybrid_hosts_only():
    assert cgroup.needs_private_view("crun", "hybrid")
    for mode in ("v1", "v2"):
        assert not cgroup.needs_private_view("crun", mode)
    assert not cgroup.needs_private_view("runc", "hybrid")


def test_describe_of_an_unprepared_backend_says_what_each_variant_times():
    for backend in (CrunBackend(binary="/nonexistent/crun"), RuncBackend()):
        assert backend.variants == (COLD, WARM)
        described = backend.describe()
        method = described["method"]
        assert set(method["variants"]) == {COLD, WARM}
        assert "run -d" in method["variants"][COLD]["inside_clock"]
        assert "create" in method["variants"][WARM]["before_clock"]
        assert f"{backend.runtime} start" in method["variants"][WARM]["inside_clock"]
        assert "kill" in method["stop"] and "pidfd" in method["stop"]
        assert "delete -f" in method["remove"]
        assert described["cgroup_controllers"] is None  # not prepared: nothing observed
        assert described["security"]["no_new_privileges"] is True
