"""The engine backends' pure parts: stream decoding, READY, the image tarball, the configs
they hand Docker, Podman and LXC (the reference profile, limits), the registry entries."""

from __future__ import annotations

import io
import os
import struct
import tarfile
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from harness import backends, doctor
from harness.backends import registry
from harness.backends.base import BackendError, InstanceSpec, NotReady
from harness.backends.engines import common
from hostkit.procs import parent_pid
from runtime import spec as runtime_spec

ENGINES = ("docker", "podman", "lxc", "docker-ours", "podman-ours")


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(payload)) + payload


def test_frames_are_decoded_however_they_are_split() -> None:
    data = frame(2, b"noise\n") + frame(1, b"REA") + frame(1, b"DY\n") + frame(1, b"")
    for size in (1, 3, 7, len(data)):
        decoder = common.FrameDecoder()
        out = b"".join(decoder.feed(data[i:i + size]) for i in range(0, len(data), size))
        assert out == b"READY\n"  # stderr's frame is dropped


def test_ready_is_found_on_a_descriptor_and_its_absence_said() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, frame(1, b"booting\r\nREADY\r\n"))
    common.wait_ready_fd(read_fd, 1.0, "cvbench-t", decode=common.FrameDecoder().feed)
    os.close(write_fd)
    os.close(read_fd)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"READ")
    os.close(write_fd)
    with pytest.raises(NotReady, match="exited before READY"):
        common.wait_ready_fd(read_fd, 1.0, "cvbench-t")
    os.close(read_fd)
    read_fd, write_fd = os.pipe()
    with pytest.raises(NotReady, match="no READY within"):
        common.wait_ready_fd(read_fd, 0.05, "cvbench-t")
    os.close(read_fd)
    os.close(write_fd)


def test_ready_sent_with_the_answer_counts() -> None:
    read_fd, write_fd = os.pipe()
    common.wait_ready_fd(read_fd, 1.0, "cvbench-t", decode=common.FrameDecoder().feed,
                         initial=frame(1, b"READY\n"))
    os.close(read_fd)
    os.close(write_fd)


def test_the_image_tarball_is_reproducible(built_image) -> None:
    first, second = common.image_tarball(built_image), common.image_tarball(built_image)
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert members["init"].isreg() and members["init"].mode & 0o111
    assert members["bin/sh"].issym()
    assert {m.uid for m in members.values()} == {0} and {m.mtime for m in members.values()} == {0}
    assert common.image_repository(built_image) == "cvbench-default"
    assert common.image_tag(built_image) == built_image.digest[:12]


def test_the_gauge_samples_the_engine_once_per_burst(monkeypatch) -> None:
    calls = []
    gauge = common.EngineGauge(lambda: calls.append(1) or [os.getpid()])
    first = gauge.take()
    assert first and first > 0
    assert gauge.take() is None and gauge.take() is None
    monkeypatch.setattr(common, "BURST_GAP_S", -1.0)
    assert gauge.take() is not None
    assert len(calls) == 2


def test_engine_memory_names_its_metrics() -> None:
    sample = common.EngineMemorySample(pss=3, uss=2, rss=4, cgroup=5, monitor_pss=1,
                                       engine_pss=9)
    assert sample.as_metrics() == {"mem_pss_bytes": 3, "mem_uss_bytes": 2, "mem_rss_bytes": 4,
                                   "mem_cgroup_bytes": 5, "mem_monitor_pss_bytes": 1,
                                   "mem_engine_pss_bytes": 9}


def test_namespace_init_and_parent() -> None:
    assert common.namespace_init([os.getpid()]) is None  # not pid 1 of a namespace
    assert parent_pid(os.getpid()) == os.getppid()


def test_the_engines_are_registered_as_containers_with_doctor_checks_and_sweepers() -> None:
    for name in ENGINES:
        entry = registry.info(name)
        assert entry.family == registry.CONTAINER and not entry.floor
        assert set(entry.needs) <= set(doctor.CHECKS), entry.needs
        assert entry.sweeper in registry.sweepers()
        assert backends.backend_class(name).name == name


@pytest.mark.parametrize("name", ["docker", "podman"])
def test_the_runtime_is_an_option_checked_before_anything_starts(name) -> None:
    assert backends.create(name, runtime="runc").runtime == "runc"
    assert backends.create(name, runtime="crun").runtime == "crun"
    with pytest.raises(BackendError, match="runtime must be one of"):
        backends.create(name, runtime="youki")
    with pytest.raises(BackendError, match="unknown option"):
        backends.create(name, flavour="x")


@pytest.mark.parametrize("name, engine", [("docker-ours", "docker"),
                                          ("podman-ours", "podman")])
def test_the_ours_engines_run_cvbench_runtime_only(name, engine) -> None:
    """docker-ours and podman-ours are their engine's backend with cvbench-runtime: no other
    runtime may be asked of them, nor ours of the plain engines, and the doctor checks the
    installed cvbench-runtime for them."""
    backend = backends.create(name)
    assert backend.runtime == common.OURS == "cvbench-runtime"
    assert isinstance(backend, backends.backend_class(engine))
    assert "cvbench-runtime" in registry.info(name).needs
    assert registry.info(name).sweeper == registry.info(engine).sweeper
    with pytest.raises(BackendError, match="unknown option 'runtime'"):
        backends.create(name, runtime="crun")
    with pytest.raises(BackendError, match="runtime must be one of runc, crun"):
        backends.create(engine, runtime=common.OURS)


def test_ours_is_the_console_script_beside_the_interpreter() -> None:
    """The podman-ours service's runtime (and what set-up gives dockerd): the installed
    console script, by its resolved path, named in the service's containers.conf."""
    import sysconfig

    from harness.backends.engines.podman import config as podman

    script = common.ours_runtime()
    assert script.is_absolute() and script.name == "cvbench-runtime"
    assert script == (Path(sysconfig.get_path("scripts")) / "cvbench-runtime").resolve()
    conf = podman.containers_conf(common.OURS, "v2")
    assert 'runtime = "cvbench-runtime"' in conf
    assert f'cvbench-runtime = ["{script}"]' in conf
    parsed = tomllib.loads(conf)
    assert parsed["engine"]["runtimes"]["cvbench-runtime"] == [str(script)]
    assert parsed["engine"]["runtime"] == "cvbench-runtime"


def test_the_doctor_checks_the_installed_cvbench_runtime(monkeypatch, tmp_path) -> None:
    from harness.backends.engines import common

    script = tmp_path / "cvbench-runtime"
    monkeypatch.setattr(common, "ours_runtime", lambda: script)
    check = doctor.CHECKS["cvbench-runtime"]()
    assert not check.ok and "missing" in check.detail and check.fix
    script.write_text("#!/bin/sh\necho 'cvbench-runtime version 9.9'\n")
    script.chmod(0o755)
    check = doctor.CHECKS["cvbench-runtime"]()
    assert check.ok and check.detail == f"{script}: cvbench-runtime version 9.9"
    script.write_text("#!/bin/sh\nexit 1\n")
    assert not doctor.CHECKS["cvbench-runtime"]().ok


def test_docker_ours_refuses_a_dockerd_without_an_executable_cvbench_runtime(tmp_path) -> None:
    from harness.backends.engines.docker.backend import DockerOursBackend

    backend = DockerOursBackend()
    backend.info = {"Runtimes": {"cvbench-runtime": {"path": str(tmp_path / "gone")}}}
    with pytest.raises(BackendError, match="not an executable.*setup.sh"):
        backend._check_runtime()
    script = tmp_path / "cvbench-runtime"
    script.write_text("#!/bin/sh\necho 'cvbench-runtime version 0.1.0'\n")
    script.chmod(0o755)
    backend.info = {"Runtimes": {"cvbench-runtime": {"path": str(script)}}}
    backend._check_runtime()
    assert backend.runtime_path() == str(script)
    assert backend._runtime_binary() == str(script)  # its version is asked of that binary


def _spec(image, network: str = "none") -> InstanceSpec:
    return InstanceSpec(name="cvbench-u-1", image=image, memory_limit_mib=64, pids_limit=32,
                        cpu_limit=0.5, network=network)


def test_docker_gets_the_reference_profile_and_limits(built_image) -> None:
    import docker

    from harness.backends.engines.docker.backend import DockerBackend
    from harness.backends.engines.docker.config import NETWORK

    backend = DockerBackend(runtime="crun")
    backend._client = docker.DockerClient(base_url="unix:///nonexistent", version="1.41")
    backend.seccomp_json = '{"defaultAction": "SCMP_ACT_ERRNO"}'
    config = backend.host_config(_spec(built_image))
    assert config["Memory"] == config["MemorySwap"] == 64 << 20
    assert config["PidsLimit"] == 32
    assert (config["CpuQuota"], config["CpuPeriod"]) == (50000, 100000)
    assert config["CapDrop"] == ["ALL"]
    assert sorted(config["CapAdd"]) == sorted(c[4:] for c in runtime_spec.DEFAULT_CAPABILITIES)
    assert config["MaskedPaths"] == list(runtime_spec.DEFAULT_MASKED)
    assert config["ReadonlyPaths"] == list(runtime_spec.DEFAULT_READONLY)
    assert "no-new-privileges:true" in config["SecurityOpt"]
    assert any(opt.startswith("seccomp={") for opt in config["SecurityOpt"])
    assert (config["NetworkMode"], config["IpcMode"], config["CgroupnsMode"]) == (
        "none", "private", "private")
    assert config["Runtime"] == "crun" and config["CgroupParent"] == "/cvbench-docker"
    assert backend.host_config(_spec(built_image, "bridge"))["NetworkMode"] == NETWORK
    assert not backend.host_config(_spec(built_image)).get("Binds")
    volume = replace(_spec(built_image), volume=Path("/srv/probe"))
    assert backend.host_config(volume)["Binds"] == ["/srv/probe:/data:rw"]


def test_podman_gets_the_reference_profile_and_limits(built_image) -> None:
    from harness.backends.engines.podman.backend import PodmanBackend
    from harness.backends.engines.podman.config import NETWORK

    backend = PodmanBackend()
    backend.image_ref, backend.seccomp_path = "localhost/cvbench-default:x", "/p.json"
    generated = backend.container_spec(_spec(built_image))
    assert generated["resource_limits"] == {
        "memory": {"limit": 64 << 20, "swap": 64 << 20}, "pids": {"limit": 32},
        "cpu": {"quota": 50000, "period": 100000}}
    assert generated["cap_drop"] == ["ALL"]
    assert generated["no_new_privileges"] is True
    assert generated["seccomp_profile_path"] == "/p.json"
    assert generated["netns"] == {"nsmode": "none"}
    assert "/proc/timer_stats" in generated["unmask"] and "/proc/sys" not in generated["unmask"]
    assert generated["mask"] == []  # podman's defaults cover the reference's masked paths
    assert generated["env"]["PATH"].startswith("/usr/local/sbin")
    bridge = backend.container_spec(_spec(built_image, "bridge"))
    assert bridge["netns"] == {"nsmode": "bridge"} and bridge["Networks"] == {NETWORK: {}}
    assert "mounts" not in generated
    volume = backend.container_spec(replace(_spec(built_image), volume=Path("/srv/probe")))
    assert volume["mounts"] == [{"destination": "/data", "source": "/srv/probe",
                                 "type": "bind", "options": ["rbind", "rw"]}]


def test_lxc_config_carries_the_reference(built_image, tmp_path) -> None:
    from harness.backends.engines.lxc.config import lxc_config

    spec = _spec(built_image)
    reference = common.reference_spec(spec)
    text = lxc_config(spec, reference, tmp_path, tmp_path / "seccomp", "v1", 0)
    entries = [line.split(" = ", 1) for line in text.splitlines()]
    config = {}
    for key, value in entries:
        config.setdefault(key, []).append(value)
    assert config["lxc.rootfs.path"] == [f"overlay:{built_image.rootfs}:{tmp_path / 'upper'}"]
    assert config["lxc.init.cmd"] == ["/init"]
    assert config["lxc.console.path"] == ["none"]
    assert config["lxc.no_new_privs"] == ["1"]
    assert sorted(config["lxc.cap.keep"][0].split()) == sorted(
        c[4:].lower() for c in runtime_spec.DEFAULT_CAPABILITIES)
    assert config["lxc.cgroup.memory.limit_in_bytes"] == [str(64 << 20)]
    assert config["lxc.cgroup.pids.max"] == ["32"]
    assert config["lxc.cgroup.cpu.cfs_quota_us"] == ["50000"]
    assert config["lxc.net.0.type"] == ["empty"]
    mounts = "\n".join(config["lxc.mount.entry"])
    assert "/dev/null proc/kcore none bind" in mounts and "tmpfs proc/acpi tmpfs ro" in mounts
    assert "/proc/irq proc/irq none bind,ro" in mounts
    assert "sys/firmware" not in mounts  # no /sys in the container
    bridge = lxc_config(_spec(built_image, "bridge"), reference, tmp_path, None, "v2", 5)
    assert "lxc.net.0.type = veth" in bridge and "lxc.net.0.ipv4.address = 10.216.0.7/16" in bridge
    assert "lxc.net.0.veth.pair = cvbench-l000005" in bridge
    assert "lxc.cgroup2.memory.max = 67108864" in bridge and "seccomp" not in bridge


def test_lxc_seccomp_follows_the_oci_section() -> None:
    from harness.backends.engines.lxc.config import lxc_seccomp

    section = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["ioperm"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},  # = default
        ],
    }
    assert lxc_seccomp(section).splitlines() == [
        "2", "allowlist errno 38", "[all]", "read allow", "write allow",
        "personality allow [0,8,==]", "clone allow [0,2114060288,&=,0]", "bpf errno 1"]
    with pytest.raises(BackendError, match="no LXC equivalent"):
        lxc_seccomp({"defaultAction": "SCMP_ACT_NOTIFY", "syscalls": []})


def test_the_default_profile_converts_for_lxc() -> None:
    from harness.backends.engines.lxc.config import lxc_seccomp
    from runtime import seccomp

    try:
        profile = seccomp.load_profile()
    except seccomp.SeccompError as error:
        pytest.skip(str(error))
    text = lxc_seccomp(seccomp.to_oci(profile, list(runtime_spec.DEFAULT_CAPABILITIES)))
    lines = text.splitlines()
    assert lines[:3] == ["2", f"allowlist errno {profile.data.get('defaultErrnoRet', 1)}",
                         "[all]"]
    assert "read allow" in lines and not any(line.startswith("bpf allow") for line in lines)


def test_a_name_without_the_prefix_is_refused() -> None:
    with pytest.raises(BackendError, match="must start with"):
        common.check_name("other-1")


def test_the_engines_run_the_crun_wrapper_on_hybrid_hosts_only() -> None:
    from harness.backends.engines import common
    from harness.backends.engines.podman import config as podman

    assert common.engine_crun("hybrid") == common.crun_wrapper()
    for mode in ("v1", "v2"):
        assert common.engine_crun(mode).name == "crun"
        assert common.engine_crun(mode) != common.crun_wrapper()
    conf = podman.containers_conf("crun", "v2")
    assert 'cgroup_manager = "cgroupfs"' in conf and 'runtime = "crun"' in conf
    assert f'crun = ["{common.engine_crun("v2")}"]' in conf
    assert f'crun = ["{common.crun_wrapper()}"]' in podman.containers_conf("runc", "hybrid")


def test_docker_finds_dockerd_behind_a_systemd_socket(monkeypatch, tmp_path) -> None:
    """With docker.socket systemd (PID 1) holds the socket: its peer is not dockerd, so the
    pid file says which process is."""
    from harness.backends.engines import common
    from harness.backends.engines.docker import service as docker

    names = {1: "systemd", 4242: "dockerd", 77: "sleep"}
    monkeypatch.setattr(common, "command_name", names.get)
    pid_file = tmp_path / "docker.pid"
    pid_file.write_text("4242\n")
    monkeypatch.setattr(common, "socket_peer_pid", lambda path: 1)
    assert docker.dockerd_pid("/run/docker.sock", pid_file) == 4242
    monkeypatch.setattr(common, "socket_peer_pid", lambda path: 4242)  # hand-started
    assert docker.dockerd_pid("/run/docker.sock", tmp_path / "none") == 4242
    pid_file.write_text("77\n")  # a stale pid file names another process now
    monkeypatch.setattr(common, "socket_peer_pid", lambda path: None)
    assert docker.dockerd_pid("/run/docker.sock", pid_file) is None


def test_docker_under_the_systemd_driver_finds_containers_in_nested_slices() -> None:
    from harness.backends.engines.docker import backend, config, service

    assert config.slice_path("cvbench-docker.slice") == "cvbench.slice/cvbench-docker.slice"
    assert config.slice_path("system.slice") == "system.slice"
    docker = backend.DockerBackend()
    docker.cgroup_parent = "cvbench-docker.slice"
    assert docker._cgroup_path("abc") == "cvbench.slice/cvbench-docker.slice/docker-abc.scope"
    docker.cgroup_parent = f"/{config.CGROUP_PARENT}"  # cgroupfs, as set-up configures it
    assert docker._cgroup_path("abc") == "cvbench-docker/abc"
    assert ("--exec-opt", "native.cgroupdriver=cgroupfs") == service.DAEMON_FLAGS[-2:]


def test_set_up_gives_dockerd_the_flags_and_runtimes_the_backends_expect() -> None:
    """scripts/setup.sh starts dockerd (both paths: the systemd drop-in and the hand start)
    with service.DAEMON_FLAGS and an --add-runtime for each of service.DAEMON_RUNTIMES;
    cvbench-runtime by the virtualenv's console script."""
    from harness.backends.engines.docker import service

    text = (Path(__file__).resolve().parents[4] / "scripts" / "setup.sh").read_text()
    flags = next(line for line in text.splitlines() if line.startswith("DOCKERD_FLAGS="))
    assert flags.split("=", 1)[1].strip('"').split() == list(service.DAEMON_FLAGS)
    runtimes = next(line for line in text.splitlines() if line.startswith("dockerd_runtimes()"))
    added = [word.split("=", 1)[0] for word in runtimes.split("--add-runtime ")[1:]]
    assert added == list(service.DAEMON_RUNTIMES) == ["crun", "cvbench-runtime"]
    assert "cvbench-runtime=$OURS_RUNTIME" in runtimes
    assert 'OURS_RUNTIME="$(realpath -m "$VENV/bin/cvbench-runtime")"' in text
    assert "$DOCKERD_FLAGS $(dockerd_runtimes)" in text  # the drop-in and the hand start
    assert text.count("$DOCKERD_FLAGS $(dockerd_runtimes)") == 2

