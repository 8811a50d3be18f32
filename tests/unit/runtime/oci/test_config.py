"""A bundle's config.json as the runtime's spec: what is honoured, and each field that cannot
be refused in one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime import cgroups
from runtime.oci import config
from runtime.spec import Spec, default_spec


class FakeImage:
    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs
        self.digest = "ab" * 32


def bundle(tmp_path: Path, **change) -> Path:
    """A bundle of the reference spec (root ``rootfs``, relative), ``change`` merged in."""
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    data = default_spec(FakeImage(tmp_path / "rootfs"), "cvbench-x", seccomp=False).to_oci()
    data["root"]["path"] = "rootfs"
    for key, value in change.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[section] = value
    (tmp_path / "config.json").write_text(json.dumps(data))
    return tmp_path


def test_a_reference_config_loads_with_its_root_made_absolute(tmp_path):
    spec = config.load(bundle(tmp_path))
    assert isinstance(spec, Spec)
    assert spec.root.path == str((tmp_path / "rootfs").resolve())
    assert spec.process.args == ["/init"]


@pytest.mark.parametrize(("change", "field"), [
    ({"ociVersion": "2.0.0"}, "ociVersion"),
    ({"hooks": {"startContainer": [{"path": "/bin/true"}]}}, "hooks.startContainer"),
    ({"hooks": {"poststop": [{"path": "/bin/true", "timeout": 0}]}}, "hooks.poststop[0]"),
    ({"hooks": {"later": []}}, "hooks.later"),
    ({"process__terminal": True}, "process.terminal"),
    ({"process__user": {"uid": 0, "gid": -1}}, "process.user.gid"),
    ({"process__user": {"uid": "1000"}}, "process.user.uid"),
    ({"process__apparmorProfile": "docker-default"}, "process.apparmorProfile"),
    ({"process__rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]},
     "process.rlimits"),
    ({"process__oomScoreAdj": 5000}, "process.oomScoreAdj"),
    ({"linux__uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]},
     "linux.uidMappings"),
    ({"linux__devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]},
     "linux.devices"),
    ({"linux__sysctl": {"vm.swappiness": "1"}}, "linux.sysctl.vm.swappiness"),
    ({"linux__sysctl": {"net/../../x": "1"}}, "linux.sysctl.net/../../x"),
    ({"linux__rootfsPropagation": "shared"}, "linux.rootfsPropagation"),
    ({"linux__cgroupsPath": "machine.slice:libpod:abc"}, "linux.cgroupsPath"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["X"]}},
     "linux.seccomp.flags"),
    ({"linux__resources": {"cpu": {"shares": 512}}}, "linux.resources.cpu.shares"),
    ({"linux__resources": {"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}},
     "linux.resources.hugepageLimits"),
    ({"linux__resources": {"blockIO": {"weight": 500}}}, "linux.resources.blockIO.weight"),
    ({"linux__resources": {"blockIO": {"weight": 0, "throttleReadBpsDevice": [
        {"major": 8, "minor": 0, "rate": 1}]}}},
     "linux.resources.blockIO.throttleReadBpsDevice"),
    ({"process__apparmorProfile": "unconfined-but-not-quite"}, "process.apparmorProfile"),
    ({"mounts": [{"destination": "/m", "type": "bind", "source": "/srv",
                  "options": ["rbind", "rshared"]}]}, "mounts[0] (/m)"),
    ({"mounts": [{"destination": "/m", "type": "bind", "source": "/srv",
                  "options": ["rbind", "idmap"]}]}, "mounts[0] (/m)"),
    ({"mounts": [{"destination": "/m", "type": "overlay", "source": "overlay"}]},
     "mounts[0] (/m)"),
    ({"annotations": {"cvbench.network": "bridge"}}, "annotations.cvbench.network"),
])
def test_what_cannot_be_honoured_is_refused_naming_the_field(tmp_path, change, field):
    with pytest.raises(config.ConfigError) as raised:
        config.load(bundle(tmp_path, **change))
    message = str(raised.value)
    assert message.startswith(f"{field}: ") and "\n" not in message


def test_a_network_namespace_path_is_joined_other_paths_and_user_are_refused(tmp_path):
    namespaces = [{"type": "mount"}, {"type": "network", "path": "/run/netns/x"}]
    loaded = config.load(bundle(tmp_path, linux__namespaces=namespaces))
    assert [(n.type, n.path) for n in loaded.linux.namespaces] == [
        ("mount", None), ("network", "/run/netns/x")]
    ipc = [{"type": "mount"}, {"type": "ipc", "path": "/proc/1/ns/ipc"}]
    with pytest.raises(config.ConfigError, match=r"^linux.namespaces \(ipc\): joining"):
        config.load(bundle(tmp_path, linux__namespaces=ipc))
    relative = [{"type": "network", "path": "run/netns/x"}]
    with pytest.raises(config.ConfigError, match=r"^linux.namespaces \(network\).path: "):
        config.load(bundle(tmp_path, linux__namespaces=relative))
    with pytest.raises(config.ConfigError, match="user namespaces are not supported"):
        config.load(bundle(tmp_path, linux__namespaces=[{"type": "mount"}, {"type": "user"}]))


def test_missing_or_broken_config_and_root(tmp_path):
    with pytest.raises(config.ConfigError, match="config.json: no such file"):
        config.load(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(config.ConfigError, match="not JSON"):
        config.load(tmp_path)
    made = bundle(tmp_path)
    (made / "rootfs").rmdir()
    with pytest.raises(config.ConfigError, match="^root.path: .* is not a directory"):
        config.load(made)


def test_namespaced_sysctls_are_kept_others_refused():
    linux = {"namespaces": [{"type": "network"}, {"type": "ipc"}],
             "sysctl": {"net.ipv4.ping_group_range": "0 0", "kernel.shmmax": "4096",
                        "fs.mqueue.msg_max": "10"}}
    assert config.sysctls(linux) == linux["sysctl"]
    with pytest.raises(config.ConfigError, match="needs a network namespace"):
        config.sysctls({"namespaces": [], "sysctl": {"net.core.somaxconn": "1"}})
    with pytest.raises(config.ConfigError, match="not a parameter of the container's own"):
        config.sysctls({"namespaces": [{"type": "ipc"}], "sysctl": {"kernel.pid_max": "9"}})


def test_no_swap_and_unlimited_values_are_honoured(tmp_path):
    spec = config.load(bundle(tmp_path, linux__resources={
        "memory": {"limit": 64 << 20, "swap": 64 << 20}, "pids": {"limit": -1},
        "cpu": {"shares": 0, "quota": 50000, "period": 100000}}))
    res = spec.linux.resources
    assert (res.memory_limit, res.pids_limit, res.cpu_quota) == (64 << 20, None, 50000)


def test_what_docker_passes_asking_for_nothing_is_accepted(tmp_path):
    """Docker always passes blockIO with weight 0 (not set) and, where AppArmor is enabled and
    no profile is wanted, apparmorProfile "unconfined" (no profile: what the runtime applies);
    neither asks for anything the runtime does not do."""
    spec = config.load(bundle(tmp_path, linux__resources={
        "memory": {"limit": 64 << 20, "swap": 64 << 20, "disableOOMKiller": False},
        "cpu": {"shares": 0, "quota": 50000, "period": 100000, "cpus": "", "mems": ""},
        "blockIO": {"weight": 0}, "pids": {"limit": 64}},
        process__apparmorProfile="unconfined"))
    res = spec.linux.resources
    assert (res.memory_limit, res.pids_limit, res.cpu_quota) == (64 << 20, 64, 50000)


def test_cgroups_path():
    assert config.cgroups_path({"linux": {"cgroupsPath": "/docker/abc"}}, "abc") == "docker/abc"
    assert config.cgroups_path({}, "abc") == "cvbench-runtime/abc"
    with pytest.raises(config.ConfigError, match="not a plain cgroup path"):
        config.cgroups_path({"linux": {"cgroupsPath": "/a/../b"}}, "abc")


def _cgroup_spec(tmp_path: Path, options: list[str]) -> Spec:
    spec = config.load(bundle(tmp_path))
    spec.mounts.append(config.Mount("/sys/fs/cgroup", "cgroup", "cgroup", options))
    return spec


def test_a_v1_cgroup_mount_is_the_containers_own_directories_read_only(tmp_path):
    root = tmp_path / "cgroupfs"
    driver = cgroups.V1Driver(root, ("memory", "pids"))
    spec = _cgroup_spec(tmp_path, ["nosuid", "relatime", "ro"])
    config.cgroup_mounts(spec, driver, "docker/abc", "/run/oci/abc/rootfs")
    added = [(m.destination, m.type, m.source, m.options) for m in spec.mounts[-4:]]
    assert added == [
        ("/sys/fs/cgroup", "tmpfs", "tmpfs", ["nosuid", "nodev", "noexec", "mode=755"]),
        ("/sys/fs/cgroup/memory", "bind", str(root / "memory/docker/abc"),
         ["bind", "nosuid", "ro"]),
        ("/sys/fs/cgroup/pids", "bind", str(root / "pids/docker/abc"), ["bind", "nosuid", "ro"]),
        ("/sys/fs/cgroup", "bind", "/run/oci/abc/rootfs/sys/fs/cgroup",
         ["rbind", "ro", "nosuid", "nodev", "noexec"]),
    ]
    assert all(m.type != "cgroup" for m in spec.mounts)


def test_a_v2_cgroup_mount_is_a_bind_of_the_containers_directory(tmp_path):
    root = tmp_path / "cgroupfs"
    spec = _cgroup_spec(tmp_path, ["ro", "nodev"])
    config.cgroup_mounts(spec, cgroups.V2Driver(root), "libpod_parent/x", "/r")
    last = spec.mounts[-1]
    assert (last.destination, last.type, last.source, last.options) == (
        "/sys/fs/cgroup", "bind", str(root / "libpod_parent/x"), ["bind", "ro", "nodev"])
