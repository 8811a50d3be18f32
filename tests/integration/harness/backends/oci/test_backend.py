"""crun and runc backends against the real kernel: start → READY → memory → stop, limits, no leaks,
and crash recovery by ``sweep()`` after a SIGKILLed harness."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness.backends.base import BackendError, InstanceSpec
from harness.backends.crun import CrunBackend
from harness.backends.oci import cgroup, launcher, probe
from harness.backends.oci.bundle import RUNTIMES, bundles_dir, runtime_root
from harness.backends.oci.sweeper import sweep
from harness.backends.runc import RuncBackend
from hostkit import mountinfo, syscalls
from imagestore.image import Image
from runtime.scopes import SHARD_PREFIX, SHARDS

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

BACKENDS = {"crun": CrunBackend, "runc": RuncBackend}
REPO = Path(__file__).resolve().parents[5]
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _prefix() -> str:
    return f"cvbench-test-oci-{uuid.uuid4().hex[:6]}-"


def _process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _live_pids_in_cgroups(prefix: str) -> set[int]:
    """Running (non-zombie) processes whose cgroup names one of our containers
    (``cvbench-oci/<shard>/<prefix>...``)."""
    found = set()
    ours = re.compile(rf"/{re.escape(cgroup.PARENT)}/{SHARD_PREFIX}[0-9a-f]+/{re.escape(prefix)}")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/cgroup") as handle:
            if ours.search(handle.read()):
                if _process_state(int(entry)) not in (None, "Z"):
                    found.add(int(entry))
    return found


def _launchers() -> set[int]:
    """Live launchers recorded under this state directory (not other users' ones)."""
    found = set()
    for _, pid in launcher.recorded_launchers():
        if launcher.is_launcher(pid) and _process_state(pid) not in (None, "Z"):
            found.add(pid)
    return found


def _cgroup_dirs(pattern: str) -> set[str]:
    """Directories matching ``pattern`` in any cgroup hierarchy (v1, hybrid or v2)."""
    return {str(p) for glob in (pattern, f"*/{pattern}") for p in CGROUP_ROOT.glob(glob)}


def _mounts_in_any_namespace(root: Path) -> set[str]:
    """Mounts that involve ``root`` (as mount point or overlay layer) in every mount namespace
    on the host: a container's root overlay shows up as ``/`` with ``upperdir=<bundle>``."""
    seen, found = set(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            namespace = os.readlink(f"/proc/{entry}/ns/mnt")
            if namespace in seen:
                continue
            seen.add(namespace)
            with open(f"/proc/{entry}/mountinfo") as handle:
                found |= {f"{namespace} {line}" for line in handle if str(root) in line}
        except OSError:
            continue
    return found


def inventory(prefix: str) -> dict[str, object]:
    """Everything the OCI backends may leave behind, as comparable sets."""
    roots = {rt: runtime_root(rt) for rt in RUNTIMES}
    cgroups = _cgroup_dirs(f"{cgroup.PARENT}/{SHARD_PREFIX}*/{prefix}*")
    return {
        "mounts": _mounts_in_any_namespace(bundles_dir()),
        "bundles": set(os.listdir(bundles_dir())) if bundles_dir().is_dir() else set(),
        "state": {rt: set(os.listdir(r)) if r.is_dir() else set() for rt, r in roots.items()},
        "cgroups": cgroups,
        # the shared parent and its shards, made in prepare(), removed by cleanup() and sweep()
        "layout": _cgroup_dirs(cgroup.PARENT) | _cgroup_dirs(f"{cgroup.PARENT}/{SHARD_PREFIX}*"),
        "processes": _live_pids_in_cgroups(prefix),
        "launchers": _launchers(),
    }


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, state_dir, built_image):
    instance = BACKENDS[request.param]()
    instance.prepare(built_image)
    yield instance
    instance.cleanup()


def test_start_ready_memory_stop_and_limits(backend, built_image):
    prefix = _prefix()
    before = inventory(prefix)
    spec = InstanceSpec(
        name=f"{prefix}1", image=built_image, memory_limit_mib=64, pids_limit=32, cpu_limit=0.5
    )
    instance = backend.start(spec)
    backend.wait_ready(instance, timeout=20)
    pid = instance.pids[0]
    assert instance.handle.ready_fd is None  # no descriptor held once ready

    sample = backend.memory(instance)
    assert sample.pss and sample.uss and sample.rss and sample.cgroup
    limits = probe.cgroup_limits(pid)  # v1 hierarchies, or the v2 cgroup: wherever it is
    assert limits.mode == ("v2" if backend.mode == "v2" else "v1")
    assert limits.memory_bytes == 64 * 1024 * 1024
    assert limits.pids == 32
    assert (limits.cpu_quota_us, limits.cpu_period_us) == (50_000, 100_000)
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    with open(f"/proc/{pid}/root/etc/hostname") as handle:  # the image's file, via the overlay
        assert handle.read().strip() == "cvbench"

    backend.stop(instance)

    backend.remove(instance)
    assert _process_state(pid) in (None, "Z") or not os.path.exists(f"/proc/{pid}")
    assert inventory(prefix) == before
    assert backend.describe()["runtime"] == backend.runtime


def test_host_network_shares_the_host_netns(backend, built_image):
    spec = InstanceSpec(name=f"{_prefix()}host", image=built_image, network="host")
    instance = backend.start(spec)
    try:
        backend.wait_ready(instance, timeout=20)
        pid = instance.pids[0]
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
        assert os.readlink(f"/proc/{pid}/ns/uts") != os.readlink("/proc/self/ns/uts")
    finally:
        backend.stop(instance)
        backend.remove(instance)


def _has_output(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def _state(backend, name: str) -> str:
    """The runtime's own word on container ``name``: created, running, stopped."""
    result = backend.launcher().run(backend._argv("state", name))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["status"]


def test_warm_create_then_resume(backend, built_image):
    """create(): the init exists and waits, no READY yet; resume(): READY from the workload."""
    prefix = _prefix()
    before = inventory(prefix)
    instance = backend.create(InstanceSpec(name=f"{prefix}warm", image=built_image))
    assert instance.variant == "warm"
    pid = instance.pids[0]
    assert _state(backend, instance.name) == "created"
    assert _process_state(pid) not in (None, "Z")
    assert not _has_output(instance.handle.ready_fd)  # the workload has not run
    assert inventory(prefix)["mounts"] - before["mounts"]  # its overlay, in its namespace

    backend.resume(instance)
    backend.wait_ready(instance, timeout=20)
    assert _state(backend, instance.name) == "running"
    assert instance.pids[0] == pid  # the created init became the workload
    with open(f"/proc/{pid}/root/etc/hostname") as handle:
        assert handle.read().strip() == "cvbench"

    backend.stop(instance)
    assert _process_state(pid) in (None, "Z")
    assert _state(backend, instance.name) == "stopped"  # stop leaves remove's work alone
    assert (bundles_dir() / instance.name).is_dir()
    backend.remove(instance)
    assert inventory(prefix) == before


def test_stop_of_a_created_container_that_never_started(backend, built_image):
    prefix = _prefix()
    before = inventory(prefix)
    instance = backend.create(InstanceSpec(name=f"{prefix}idle", image=built_image))
    started = time.monotonic()
    backend.stop(instance)  # KILL at once: the runtime's init ignores TERM
    assert time.monotonic() - started < backend.grace_s
    backend.remove(instance)
    assert inventory(prefix) == before


def test_describe_observes_the_same_cgroups_and_device_rules(state_dir, built_image):
    """Both runtimes use the cgroupfs manager and filter devices by the same rules. On v1 and
    hybrid hosts both make every v1 hierarchy's cgroup (runc the unified tree's too, which
    crun's private view has not) and write the same devices.list; on a v2 host both give the
    container's cgroup the same controllers and attach a device program to it."""
    prefix = _prefix()
    before = inventory(prefix)
    described = {}
    for name, backend_class in sorted(BACKENDS.items()):
        backend = backend_class()
        backend.prepare(built_image)
        try:
            described[name] = backend.describe()
            assert backend.describe()["devices"] == described[name]["devices"]  # remembered
        finally:
            backend.cleanup()
    crun, runc = described["crun"], described["runc"]
    assert crun["cgroup_manager"] == runc["cgroup_manager"] == "cgroupfs"
    assert crun["devices"] == runc["devices"]
    assert crun["devices"] and {"c 1:3 rwm", "c 136:* rwm"} <= set(crun["devices"])
    if cgroup.host_mode() == "v2":
        assert {"memory", "pids", "cpu"} <= set(crun["cgroup_controllers"])
        assert crun["cgroup_controllers"] == runc["cgroup_controllers"]
        assert crun["device_filter"]["programs"] and runc["device_filter"]["programs"]
    else:
        assert {"memory", "pids", "cpu", "devices", "freezer"} <= set(
            crun["cgroup_controllers"])
        assert "device_filter" not in crun and "device_filter" not in runc
    if cgroup.host_mode() == "hybrid":
        assert set(runc["cgroup_controllers"]) - set(crun["cgroup_controllers"]) == {"unified"}
    # the kernel's filters differ by runc's own stub: compared in test_seccomp_readback.py
    assert ({k: v for k, v in crun["security"].items() if k != "kernel_filter"}
            == {k: v for k, v in runc["security"].items() if k != "kernel_filter"})
    assert crun["security"]["kernel_filter"]["cold"]["filters"] == 1
    assert inventory(prefix) == before


@pytest.mark.parametrize("variant", ["cold", "warm"])
def test_concurrent_batch_from_threads_leaves_nothing(backend, built_image, variant):
    """20 containers started (or created then resumed) from 10 threads through the one
    launcher, all READY, then stopped and removed from 10 threads."""
    prefix = _prefix()
    before = inventory(prefix)
    specs = [InstanceSpec(name=f"{prefix}{index}", image=built_image) for index in range(20)]

    def up(spec):
        if variant == "cold":
            instance = backend.start(spec)
        else:
            instance = backend.create(spec)
            backend.resume(instance)
        backend.wait_ready(instance, timeout=60)
        return instance

    def down(instance) -> None:
        backend.stop(instance)
        backend.remove(instance)

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        instances = list(pool.map(up, specs))
        assert len({instance.pids[0] for instance in instances}) == 20
        # the launcher mounts starts in flight side by side; each container keeps only its own
        for instance in instances:
            overlays = [m for m in mountinfo.read(instance.pids[0]) if m.fstype == "overlay"]
            assert [m.point for m in overlays] == ["/"], overlays
        during = inventory(prefix)
        assert len(during["processes"]) >= 20
        assert len(during["state"][backend.runtime]) == len(before["state"][backend.runtime]) + 20
        list(pool.map(down, instances))
    assert not backend.live
    assert inventory(prefix) == before


WRAPPER = """#!/bin/sh
echo "$(readlink /proc/self/ns/mnt) $PPID $*" >> {log}
exec {binary} "$@"
"""


def _overlays_under(root: Path, pid: int | str) -> list[str]:
    """Overlay mounts on a bundle under ``root`` in ``pid``'s mount namespace."""
    return [mount.point for mount in mountinfo.read(pid)
            if mount.fstype == "overlay" and mount.point.startswith(f"{root}/")]


@pytest.mark.parametrize("runtime", sorted(BACKENDS))
def test_the_launcher_mounts_each_overlay_itself_and_keeps_none(runtime, state_dir,
                                                                built_image, tmp_path):
    """The runtime's ``run``/``create`` runs in the launcher's own mount namespace (no forked
    child with a namespace of its own), and once a start returned neither the launcher's
    mount table nor the host's holds its overlay, with 20 containers live: each container
    holds its own private copy (not a slave of the launcher's mount), and sees its root."""
    (tmp_path / "bin").mkdir()
    log = tmp_path / "commands.log"
    wrapper = tmp_path / "bin" / runtime  # the same name: the same private cgroup view
    wrapper.write_text(WRAPPER.format(log=log, binary=shutil.which(runtime)))
    wrapper.chmod(0o755)
    prefix = _prefix()
    before = inventory(prefix)
    backend = BACKENDS[runtime](binary=str(wrapper))
    backend.prepare(built_image)
    instances = []
    try:
        launcher_pid = backend.launcher().process.pid
        for index in range(20):
            spec = InstanceSpec(name=f"{prefix}{index}", image=built_image)
            if index % 4 == 3:  # warm ones too: created, then resumed
                instance = backend.create(spec)
                assert not _overlays_under(bundles_dir(), launcher_pid)
                backend.resume(instance)
            else:
                instance = backend.start(spec)
            instances.append(instance)
            assert not _overlays_under(bundles_dir(), launcher_pid), index
            assert not _overlays_under(bundles_dir(), "self"), index
            backend.wait_ready(instance, timeout=20)
            pid = instance.pids[0]
            assert "init" in os.listdir(f"/proc/{pid}/root")
            with open(f"/proc/{pid}/mountinfo") as handle:
                (root,) = [line for line in handle if line.split()[4] == "/"]
            assert f"upperdir={instance.handle.bundle.upper}" in root, root
            assert "master:" not in root.split(" - ")[0], root  # its own copy, private
            share = instance.harness["harness_s"]
            assert 0 < share < 1, share
        own = os.readlink(f"/proc/{launcher_pid}/ns/mnt")
        lines = [line.split() for line in log.read_text().splitlines()
                 if {"run", "create"} & set(line.split()[2:])]
        assert len(lines) == 20
    finally:
        for instance in instances:
            backend.stop(instance)
            backend.remove(instance)
        backend.cleanup()
    assert all(namespace == own and int(parent) == launcher_pid
               for namespace, parent, *_ in lines), lines
    assert all(set(instance.harness) == {"harness_s", "stop_harness_s", "cleanup_harness_s"}
               for instance in instances)
    assert inventory(prefix) == before


CRASHER = """
import sys, time
from harness.backends import create
from harness.backends.base import BackendError, InstanceSpec
from imagestore import image
backend = create(sys.argv[1])
img = image.resolve()
backend.prepare(img)
for index in range(3):
    instance = backend.start(InstanceSpec(name=f"{sys.argv[2]}{index}", image=img))
    backend.wait_ready(instance, 20)
backend.create(InstanceSpec(name=f"{sys.argv[2]}created", image=img))  # warm, never started
print("STARTED", flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize("runtime", sorted(BACKENDS))
def test_sweep_after_sigkill_of_the_harness(runtime, state_dir, built_image):
    prefix = _prefix()
    before = inventory(prefix)
    # Adopt the orphaned launcher so that its exit leaves no zombie (PID 1 here does not reap).
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", CRASHER, runtime, prefix],
            cwd=REPO,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert child.stdout.readline().strip() == b"STARTED"
        during = inventory(prefix)
        assert len(during["processes"]) >= 4
        assert len({Path(p).name for p in during["layout"]} - {cgroup.PARENT}) == SHARDS
        assert len(during["mounts"]) >= 4  # one overlay root per container, in its namespace
        assert len(during["state"][runtime]) == len(before["state"][runtime]) + 4
        launchers = during["launchers"] - before["launchers"]
        assert launchers
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        assert _launchers() >= launchers  # it outlives the harness to reap the containers

        removed = sweep()
        assert sum(f"{runtime} container {prefix}" in line for line in removed) == 4
        for pid in launchers:  # the orphaned launcher exits once its containers are gone
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    finally:
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 0)
    after = inventory(prefix)
    assert after == before, json.dumps({k: str(after[k]) for k in after})
    assert sweep() == []  # idempotent


def _custom_image(root: Path, init: str | None) -> Image:
    """A throw-away image: busybox plus the given /init script (or no /init at all)."""
    for directory in ("bin", "dev", "proc", "sys", "tmp", "etc"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "sleep", "echo"):
        (root / "bin" / applet).symlink_to("busybox")
    if init is not None:
        (root / "init").write_text(init)
        (root / "init").chmod(0o755)
    return Image(name="custom", digest="0" * 64, rootfs=root)


def test_failed_start_leaves_nothing(backend, tmp_path):
    prefix = _prefix()
    before = inventory(prefix)
    spec = InstanceSpec(name=f"{prefix}broken", image=_custom_image(tmp_path / "rootfs", None))
    with pytest.raises(BackendError):
        instance = backend.start(spec)
        backend.wait_ready(instance, timeout=5)
    assert not backend.live
    assert inventory(prefix) == before


def test_stop_kills_a_workload_that_ignores_sigterm(backend, tmp_path):
    stubborn = "#!/bin/sh\ntrap '' TERM\necho READY\nwhile :; do sleep 1; done\n"
    prefix = _prefix()
    before = inventory(prefix)
    backend.grace_s = 0.5
    spec = InstanceSpec(name=f"{prefix}stubborn", image=_custom_image(tmp_path / "r", stubborn))
    instance = backend.start(spec)
    backend.wait_ready(instance, timeout=20)
    backend.stop(instance)
    backend.remove(instance)
    assert inventory(prefix) == before


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_prepare_makes_the_shared_layout_and_cleanup_removes_it(name, state_dir, built_image):
    """prepare() makes cvbench-oci and its 16 shards (before any start, so no start makes a
    level of them); the container lands in its shard; cleanup() removes them all."""
    backend = BACKENDS[name]()
    backend.prepare(built_image)
    try:
        shards = {Path(p).name for p in _cgroup_dirs(f"{cgroup.PARENT}/{SHARD_PREFIX}*")}
        assert shards == {f"{SHARD_PREFIX}{index:x}" for index in range(SHARDS)}
        instance = backend.start(InstanceSpec(name=f"{_prefix()}p", image=built_image))
        backend.wait_ready(instance, timeout=20)
        joined = probe.process_cgroups(instance.pids[0])
        assert joined[probe.UNIFIED if backend.mode == "v2" else "memory"] == (
            cgroup.cgroups_path(instance.name))  # /cvbench-oci/<shard>/<name>
    finally:
        backend.cleanup()
    assert _cgroup_dirs(cgroup.PARENT) == set()


MID_CREATION = """
import sys, time
from harness.backends import create
from harness.backends.base import InstanceSpec
from imagestore import image
backend = create(sys.argv[1], binary=sys.argv[3])
img = image.resolve()
backend.prepare(img)
instance = backend.start(InstanceSpec(name=f"{sys.argv[2]}0", image=img))
backend.wait_ready(instance, 20)
print("STARTING", flush=True)
backend.start(InstanceSpec(name=f"{sys.argv[2]}1", image=img))  # killed in the middle
"""


@pytest.mark.parametrize("runtime", sorted(BACKENDS))
def test_sweep_after_sigkill_in_the_middle_of_a_run(runtime, state_dir, built_image, tmp_path):
    """SIGKILL while ``<runtime> run`` is in flight: the sweep stops the command too, so it
    cannot create its container after the sweep looked for containers."""
    slow = tmp_path / "bin" / runtime  # the same name: crun's hybrid-host handling keys on it
    slow.parent.mkdir()
    slow.write_text(f'#!/bin/sh\ncase " $* " in *" run "*) sleep 1.5;; esac\n'
                    f'exec {shutil.which(runtime)} "$@"\n')
    slow.chmod(0o755)
    prefix = _prefix()
    before = inventory(prefix)
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", MID_CREATION, runtime, prefix, str(slow)],
            cwd=REPO, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert child.stdout.readline().strip() == b"STARTING"
        time.sleep(0.5)  # the second bundle exists; its run is asleep in the wrapper
        assert len(inventory(prefix)["bundles"]) == len(before["bundles"]) + 2
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        launchers = _launchers() - before["launchers"]
        sweep()
        for pid in launchers:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        time.sleep(2)  # had the in-flight run survived, its container would exist by now
    finally:
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 0)
    after = inventory(prefix)
    assert after == before, json.dumps({k: str(after[k]) for k in after})


def test_the_v2_probe_finds_a_device_program_on_this_hosts_cgroup2_tree(tmp_path):
    """The v2 observation on a real cgroup2 mount, wherever it is (the hybrid host's unified
    tree here, the root on a v2 host): a cgroup with a device program attached, as crun and
    runc attach theirs, is seen with its program and the config's rules; without, no rules."""
    from runtime import cgroups, device_filter, devices

    unified = Path(mountinfo.cgroup2_points(mountinfo.read())[0])
    name = f"{_prefix()}v2probe"
    driver = cgroups.V2Driver(unified)
    driver.create(cgroup.path(name), cgroups.Limits())
    rules = devices.container_rules([devices.DENY_ALL])  # ours', as config.json has them
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"linux": {"resources": {"devices": [
        rule.to_oci() for rule in rules]}}}))
    try:
        bare = probe.observe(name, root=unified, config=config)
        assert bare.device_programs == () and bare.devices is None
        device_filter.attach(unified / cgroup.path(name), rules)
        seen = probe.observe(name, root=unified, config=config).as_dict()
        assert len(seen["device_filter"]["programs"]) == 1
        assert seen["devices"] and {"c 1:3 rwm", "c 136:* rwm"} <= set(seen["devices"])
    finally:
        driver.remove(cgroup.path(name))
        driver.remove_parent(cgroup.PARENT)
