"""The launch plan: its JSON round trip, its decoding errors, and how a spec becomes one."""

from __future__ import annotations

import base64
import json
import resource
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from hostkit import syscalls as sc
from runtime import caps, planner
from runtime.plan import CapSets, LaunchPlan, Mount, PlanError, Rlimit, Rootfs
from runtime.spec import Mount as SpecMount
from runtime.spec import Namespace, default_spec
from runtime.spec import Rlimit as SpecRlimit


class FakeImage:
    rootfs = Path("/images/abc/rootfs")
    digest = "cd" * 32


def full_plan() -> LaunchPlan:
    """A plan in which every field has a value of its own (no defaults, no empty lists)."""
    return LaunchPlan(
        new_pid=True,
        unshare=sc.CLONE_NEWNS | sc.CLONE_NEWNET,
        loopback=True,
        cgroup_procs=("/sys/fs/cgroup/memory/x/cgroup.procs", "/sys/fs/cgroup/pids/x/cgroup.procs"),
        rootfs=Rootfs(
            merged="/var/lib/cvbench/containers/x",
            overlay="lowerdir=/l,upperdir=/u,workdir=/w",
            mounts=(
                Mount("/proc", "proc", "proc", sc.MS_NOSUID, ""),
                Mount("/data", "bind", "/srv", sc.MS_BIND | sc.MS_RDONLY, "mode=755"),
            ),
            masked=("/proc/kcore", "/sys/firmware"),
            readonly_paths=("/proc/sys",),
            readonly_root=True,
            pivot_root=True,
            bind="/bundle/rootfs",
        ),
        hostname="box",
        rlimits=(Rlimit(resource.RLIMIT_NOFILE, 1024, 4096),),
        caps=CapSets(bounding=7, effective=3, permitted=5, inheritable=1),
        no_new_privs=True,
        seccomp="AAAAAAAAAAA=",
        cwd="/tmp",
        args=("/bin/sh", "-c", "echo READY"),
        env=("PATH=/bin", "HOME=/root"),
        keyring="cvbench-x",
        groups=(10, 4242),
        umask=0o027,
        uid=1000,
        gid=100,
        stdio=True,
        start_fifo="/run/cvbench-runtime/oci/x/exec.fifo",
        sysctl=("net.ipv4.ping_group_range=0 0", "kernel.shmmax=1024"),
        netns="/run/netns/cvbench-x",
    )


def round_trip(plan: LaunchPlan) -> LaunchPlan:
    return LaunchPlan.from_dict(json.loads(json.dumps(plan.to_dict())))


def _assert_same(a: object, b: object, where: str) -> None:
    assert type(a) is type(b), where
    if is_dataclass(a):
        for f in fields(a):
            _assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_every_field_survives_the_json_round_trip():
    plan = full_plan()
    again = round_trip(plan)
    assert again == plan
    _assert_same(plan, again, "plan")  # same types too: tuples stay tuples, ints stay ints


def test_a_planned_default_spec_survives_the_round_trip():
    spec = default_spec(FakeImage(), "c", memory_limit_mib=64, network="bridge", sysfs=True)
    plan = planner.launch_plan(spec, Path("/state/containers/c"), ["/cg/cgroup.procs"])
    assert round_trip(plan) == plan


@pytest.mark.parametrize("key", [f.name for f in fields(LaunchPlan)])
def test_a_missing_key_is_named(key):
    data = json.loads(json.dumps(full_plan().to_dict()))
    del data[key]
    with pytest.raises(PlanError, match=f"^plan: missing key\\(s\\) {key}$"):
        LaunchPlan.from_dict(data)


def test_unknown_and_nested_keys_are_named():
    data = json.loads(json.dumps(full_plan().to_dict()))
    data["landlock"] = {}
    with pytest.raises(PlanError, match=r"^plan: unknown key\(s\) landlock$"):
        LaunchPlan.from_dict(data)
    del data["landlock"]
    del data["rootfs"]["mounts"][1]["flags"]
    with pytest.raises(PlanError, match=r"^plan\.rootfs\.mounts\[1\]: missing key\(s\) flags$"):
        LaunchPlan.from_dict(data)
    data["rootfs"]["mounts"] = {}
    with pytest.raises(PlanError, match=r"^plan\.rootfs\.mounts: expected a list, got dict$"):
        LaunchPlan.from_dict(data)
    data = json.loads(json.dumps(full_plan().to_dict()))
    data["caps"]["ambient"] = 0
    with pytest.raises(PlanError, match=r"^plan\.caps: unknown key\(s\) ambient$"):
        LaunchPlan.from_dict(data)
    data = json.loads(json.dumps(full_plan().to_dict()))
    data["args"] = "/init"
    with pytest.raises(PlanError, match=r"^plan\.args: expected a list, got str$"):
        LaunchPlan.from_dict(data)
    with pytest.raises(PlanError, match="^plan: expected an object, got list$"):
        LaunchPlan.from_dict([])


def test_launch_plan_of_a_default_spec():
    spec = default_spec(FakeImage(), "box", network="none")
    spec.process.rlimits = [
        SpecRlimit("RLIMIT_NOFILE", hard=4096, soft=1024),
        SpecRlimit("RLIMIT_NOPE", hard=1, soft=1),
    ]
    plan = planner.launch_plan(spec, Path("/s/containers/box"), ["/cg/a/cgroup.procs"])
    assert plan.new_pid and plan.loopback
    assert plan.unshare == (
        sc.CLONE_NEWNET | sc.CLONE_NEWNS | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS | sc.CLONE_NEWCGROUP
    )
    assert plan.hostname == "box"
    assert plan.cgroup_procs == ("/cg/a/cgroup.procs",)
    assert plan.rootfs.merged == "/s/containers/box"
    assert plan.rootfs.overlay == (
        "lowerdir=/images/abc/rootfs,upperdir=/s/containers/box/upper,"
        "workdir=/s/containers/box/work"
    )
    assert [m.destination for m in plan.rootfs.mounts] == ["/proc", "/dev", "/dev/pts"]
    assert plan.rootfs.masked == tuple(spec.linux.masked_paths)
    assert plan.rlimits == (Rlimit(resource.RLIMIT_NOFILE, 1024, 4096),)  # unknown ones dropped
    assert plan.caps.bounding == caps.mask(spec.process.capabilities.bounding)
    assert plan.caps.inheritable == 0
    assert plan.args == ("/init",) and plan.cwd == "/" and plan.no_new_privs
    program = base64.b64decode(plan.seccomp)
    assert program and len(program) % 8 == 0  # classic BPF: 8 bytes per instruction
    assert plan.keyring == "box"  # named after the container, as crun names it after its id
    assert plan.groups == ()  # no additionalGids: setgroups to none


def test_additional_gids_and_the_keyring_name_reach_the_plan():
    spec = default_spec(FakeImage(), "box")
    spec.process.additional_gids = [10, 4242]
    plan = planner.launch_plan(spec, Path("/s/containers/box"), [], keyring="other")
    assert plan.groups == (10, 4242) and plan.keyring == "other"
    assert round_trip(plan).groups == (10, 4242)


def test_groups_must_be_integers():
    data = full_plan().to_dict()
    data["groups"] = ["wheel"]
    with pytest.raises(PlanError, match="plan.groups"):
        LaunchPlan.from_dict(data)


def test_the_seccomp_program_is_compiled_for_every_container(monkeypatch):
    """No cache between containers (crun and runc compile for each of theirs): two plans of
    one section compile twice; a cold plan leaves the program to the host (compiled during
    the launch), and a spec without seccomp compiles nothing."""
    calls = []
    monkeypatch.setattr(planner.seccomp, "compile_bpf",
                        lambda section: calls.append(section) or b"\x06" + b"\0" * 7)
    first = default_spec(FakeImage(), "a")
    again = default_spec(FakeImage(), "b", memory_limit_mib=32)
    assert again.linux.seccomp is first.linux.seccomp  # one shared, frozen section
    plans = [planner.launch_plan(spec, Path(f"/s/containers/{spec.hostname}"), [])
             for spec in (first, again)]
    assert len(calls) == 2 and all(plan.seccomp for plan in plans)
    assert not any(plan.seccomp_follows for plan in plans)
    cold = planner.launch_plan(first, Path("/s/containers/a"), [], seccomp_follows=True)
    assert len(calls) == 2 and cold.seccomp == "" and cold.seccomp_follows
    bare = planner.launch_plan(default_spec(FakeImage(), "n", seccomp=False),
                               Path("/s/containers/n"), [], seccomp_follows=True)
    assert len(calls) == 2 and bare.seccomp == "" and not bare.seccomp_follows


def test_launch_plan_of_a_host_network_spec_has_no_netns():
    spec = default_spec(FakeImage(), "h", network="host")
    plan = planner.launch_plan(spec, Path("/s/containers/h"), [])
    assert not plan.loopback and not plan.unshare & sc.CLONE_NEWNET


def test_a_network_namespace_path_is_joined_not_made():
    spec = default_spec(FakeImage(), "j")
    spec.linux.namespaces = [n for n in spec.linux.namespaces if n.type != "network"]
    spec.linux.namespaces.append(Namespace("network", "/run/netns/cni-1"))
    plan = planner.launch_plan(spec, Path("/s/containers/j"), [])
    assert plan.netns == "/run/netns/cni-1"
    assert not plan.unshare & sc.CLONE_NEWNET and not plan.loopback  # its own lo, as it is
    assert plan.unshare & sc.CLONE_NEWNS and plan.new_pid  # the others still made
    own = planner.launch_plan(default_spec(FakeImage(), "o"), Path("/s/containers/o"), [])
    assert own.netns == "" and own.unshare & sc.CLONE_NEWNET and own.loopback


def test_unknown_capabilities_are_refused():
    spec = default_spec(FakeImage(), "c")
    spec.process.capabilities.bounding.append("CAP_NOPE")
    with pytest.raises(ValueError, match="unknown capability 'CAP_NOPE'"):
        planner.launch_plan(spec, Path("/s/containers/c"), [])


def test_parse_options_splits_flags_and_data():
    flags, data = planner.parse_options(["nosuid", "noexec", "mode=755", "size=65536k", "ro"])
    assert flags == sc.MS_NOSUID | sc.MS_NOEXEC | sc.MS_RDONLY
    assert data == "mode=755,size=65536k"
    flags, _ = planner.parse_options(["ro", "rw"])
    assert flags == 0


def test_mounts_mark_binds():
    bind = planner.mount(SpecMount("/data", "none", "/srv", ["rbind", "ro"]))
    assert (bind.destination, bind.kind, bind.source) == ("/data", "bind", "/srv")
    assert bind.flags & sc.MS_BIND and bind.flags & sc.MS_REC and bind.flags & sc.MS_RDONLY
    assert planner.mount(SpecMount("/proc", "proc", "proc", [])) == Mount(
        "/proc", "proc", "proc", 0, ""
    )


def test_overlay_options_refuse_separators():
    assert planner.overlay_options("/l", "/u", "/w") == "lowerdir=/l,upperdir=/u,workdir=/w"
    with pytest.raises(ValueError, match="must not contain"):
        planner.overlay_options("/l,x", "/u", "/w")


def test_an_oci_plan_binds_the_root_and_carries_stdio_fifo_and_sysctls():
    spec = default_spec(FakeImage(), "x")
    plan = planner.launch_plan(spec, Path("/run/oci/x/rootfs"), ["/cg/cgroup.procs"],
                               bind_root=True, stdio=True, start_fifo="/run/oci/x/exec.fifo",
                               wait_for_start=True, sysctl={"net.ipv4.ip_forward": "0"})
    assert (plan.rootfs.bind, plan.rootfs.overlay) == (str(FakeImage.rootfs), "")
    assert plan.rootfs.merged == "/run/oci/x/rootfs"
    assert (plan.stdio, plan.start_fifo) == (True, "/run/oci/x/exec.fifo")
    assert plan.sysctl == ("net.ipv4.ip_forward=0",)
    assert round_trip(plan) == plan
