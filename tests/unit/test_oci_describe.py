"""What the crun/runc backends report about themselves (pure: no runtime, no root):
the isolation profile from config.json, the cgroups a probe container got, the method."""

from __future__ import annotations

from pathlib import Path

from harness.backends.base import COLD, WARM, InstanceSpec
from harness.backends.crun import CrunBackend
from harness.backends.oci import cgroup, probe
from harness.backends.oci.bundle import build_config
from harness.backends.oci.profile import seccomp_summary, security
from harness.backends.runc import RuncBackend
from imagestore.image import Image

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


def test_probe_on_a_v2_host_lists_the_enabled_controllers(tmp_path):
    directory = tmp_path / cgroup.path("cvbench-unit-1")
    directory.mkdir(parents=True)
    (directory / "cgroup.controllers").write_text("cpu memory pids\n")
    observed = probe.observe("cvbench-unit-1", root=tmp_path)
    assert observed.as_dict() == {"cgroup_controllers": ["cpu", "memory", "pids"],
                                  "devices": None}


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
