"""The ``floor`` backend end to end (root, real kernel objects): with every step on it gives
its container what ours gives (namespaces, overlay root, the shared cgroup layout,
capabilities, no_new_privs, seccomp), each step switched off leaves exactly its part out,
and stop, remove, clean-up and the sweeper after a SIGKILLed harness leave nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.backends.base import COLD, WARM, BackendError, Instance, InstanceSpec, launch
from harness.backends.floor import plan as floor_plan
from harness.backends.floor import sweeper
from harness.backends.floor.backend import FloorBackend
from harness.backends.floor.paths import (
    PARENT,
    cgroup_path,
    containers_dir,
    launcher_path,
    plans_dir,
)
from harness.backends.launch import Launch
from harness.backends.oci import probe
from harness.backends.ours import OursBackend
from harness.backends.ready_rule import ReadyRule
from hostkit.procs import running as process_running
from runtime import cgroups, scopes

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[4]

NAMESPACES = ("pid", "mnt", "uts", "ipc", "net", "cgroup")
STATUS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
          "Seccomp_filters")


@pytest.fixture(autouse=True)
def built_launcher() -> None:
    if not os.access(launcher_path(), os.X_OK):
        pytest.fail(f"no floor launcher at {launcher_path()}: run scripts/setup.sh")


def name() -> str:
    return f"cvbench-test-floor-{uuid.uuid4().hex[:8]}"


@contextmanager
def started(backend, image, variant: str = COLD) -> Iterator[Instance]:
    """One READY container of ``backend`` (prepared), stopped and removed after."""
    instance = launch(backend, InstanceSpec(name=name(), image=image), variant)
    try:
        backend.wait_ready(instance, 20)
        yield instance
    finally:
        backend.stop(instance)
        backend.remove(instance)


def status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in STATUS:
            fields[key] = value.strip()
    return fields


def namespaces(pid: int | str) -> dict[str, str]:
    return {kind: os.readlink(f"/proc/{pid}/ns/{kind}") for kind in NAMESPACES}


def root_mount(pid: int) -> str:
    """The filesystem type of the process's root mount."""
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return fields[fields.index("-") + 1]
    raise AssertionError(f"no root mount in /proc/{pid}/mountinfo")


def own_cgroups(pid: int) -> dict[str, str]:
    """hierarchy -> the process's cgroup, where it is not the root's."""
    return {hierarchy: path for hierarchy, path in probe.process_cgroups(pid).items()
            if path != "/"}


def with_steps(image, steps) -> FloorBackend:
    backend = FloorBackend(steps=list(steps))
    backend.prepare(image)
    return backend


@pytest.fixture
def ours(state_dir, built_image) -> Iterator[OursBackend]:
    backend = OursBackend()
    backend.prepare(built_image)
    yield backend
    backend.cleanup()


@pytest.mark.parametrize("variant", [COLD, WARM])
def test_all_steps_give_what_ours_gives(state_dir, built_image, ours, variant):
    floor = with_steps(built_image, floor_plan.STEPS)
    try:
        with started(ours, built_image, variant) as theirs:
            expected_status = status(theirs.pids[0])
            expected_hierarchies = set(own_cgroups(theirs.pids[0]))
        with started(floor, built_image, variant) as instance:
            pid = instance.pids[0]
            assert status(pid) == expected_status
            host = namespaces("self")
            assert all(namespaces(pid)[kind] != host[kind] for kind in NAMESPACES)
            assert root_mount(pid) == "overlay"
            joined = own_cgroups(pid)
            assert set(joined) == expected_hierarchies  # the same hierarchies as ours
            container = cgroup_path(instance.name)
            assert container == f"{PARENT}/{scopes.shard(instance.name)}/{instance.name}"
            assert set(joined.values()) == {f"/{container}"}
            assert Path(f"/proc/{pid}/root/dev/null").is_char_device()
            assert "devpts" in Path(f"/proc/{pid}/mountinfo").read_text()
        assert floor.describe()["cgroup_layout"] == cgroups.driver().layout(PARENT)
    finally:
        floor.cleanup()


# An imported image's process on the default image: a program named without a slash (looked
# up in the image), a workdir, a user, an env value with a space.
IMPORTED = Launch(entrypoint=("sh", "-c"),
                  cmd=('echo "$(pwd) $(id -u):$(id -g) $FOO"; echo READY; exec sleep 30',),
                  env=("PATH=/bin", "FOO=a b"), workdir="/tmp", uid=1000, gid=1001)
USER_STATUS = ("Uid", "Gid", "Groups")


@pytest.mark.parametrize("variant", [COLD, WARM])
def test_an_imported_images_process_runs_as_under_ours(state_dir, built_image, ours, variant):
    """The same line printed (workdir, user, env), the same capabilities, no_new_privs,
    filter and ids in /proc as ours' (the user switch between the bounding-set drop and
    capset); as root in / it would print another line and never be ready."""
    floor = with_steps(built_image, floor_plan.STEPS)
    seen = {}
    try:
        for backend in (ours, floor):
            spec = InstanceSpec(name=name(), image=built_image, launch=IMPORTED,
                                ready=ReadyRule.parse("line:/tmp 1000:1001 a b"))
            instance = launch(backend, spec, variant)
            try:
                backend.wait_ready(instance, 20)
                pid = instance.pids[0]
                user = {key: value.strip() for key, _, value in (
                    line.partition(":") for line in
                    Path(f"/proc/{pid}/status").read_text().splitlines())
                    if key in USER_STATUS}
                seen[backend.name] = {**status(pid), **user}
            finally:
                backend.stop(instance)
                backend.remove(instance)
    finally:
        floor.cleanup()
    assert seen["floor"] == seen["ours"]
    assert seen["floor"]["Uid"].split() == ["1000"] * 4
    assert seen["floor"]["Gid"].split() == ["1001"] * 4
    assert seen["floor"]["CapEff"] == "0000000000000000"  # a non-root user keeps none


HOST_STATUS_OFF = {"caps": ("CapBnd", "NoNewPrivs"), "seccomp": ("Seccomp",)}


@pytest.mark.parametrize("off", floor_plan.STEPS)
def test_each_step_off_leaves_out_its_part(state_dir, built_image, off):
    on = [step for step in floor_plan.STEPS if step != off]
    floor = with_steps(built_image, on)
    mine = status(os.getpid())
    try:
        with started(floor, built_image) as instance:
            pid = instance.pids[0]
            seen = status(pid)
            host, theirs = namespaces("self"), namespaces(pid)
            shared = {kind for kind in NAMESPACES if theirs[kind] == host[kind]}
            assert shared == ({"pid", "uts", "ipc", "net", "cgroup"} if off == "namespaces"
                              else set()), shared
            assert (root_mount(pid) == "overlay") == (off != "rootfs")
            in_floor = any(PARENT in path for path in own_cgroups(pid).values())
            assert in_floor == (off != "cgroups")
            assert (seen["CapBnd"] == mine["CapBnd"]) == (off == "caps")
            assert seen["NoNewPrivs"] == ("0" if off == "caps" else "1")
            assert seen["Seccomp"] == ("0" if off == "seccomp" else "2")
    finally:
        floor.cleanup()


def test_no_step_is_a_plain_fork_of_the_workload(state_dir, built_image):
    floor = with_steps(built_image, [])
    try:
        with started(floor, built_image, WARM) as instance:
            pid = instance.pids[0]
            assert namespaces(pid) == namespaces("self")
            assert status(pid)["Seccomp"] == "0"
    finally:
        floor.cleanup()


def test_a_failed_step_is_one_line(state_dir, built_image, tmp_path):
    floor = with_steps(built_image, floor_plan.STEPS)
    try:
        for prepared in floor._prepared.values():  # a plan whose workload does not exist
            data = prepared.plan_file.read_bytes().replace(b"/init\0", b"/nope\0")
            prepared.plan_file.write_bytes(data)
        instance = floor.start(InstanceSpec(name=name(), image=built_image))
        with pytest.raises(Exception, match=r"cvbench-error: /nope: No such file"):
            floor.wait_ready(instance, 10)
        floor.stop(instance)
        floor.remove(instance)
    finally:
        floor.cleanup()


def leftovers() -> list[str]:
    found = [str(path) for path in containers_dir().iterdir()] if containers_dir().is_dir() else []
    found += [str(path) for path in plans_dir().iterdir()] if plans_dir().is_dir() else []
    if cgroups.driver().exists(PARENT):
        found.append(f"cgroup {PARENT}")
    return found


@pytest.mark.parametrize("variant", [COLD, WARM])
def test_stop_remove_and_cleanup_leave_nothing(state_dir, built_image, variant):
    floor = with_steps(built_image, floor_plan.STEPS)
    try:
        with started(floor, built_image, variant) as instance:
            pid = instance.pids[0]
            path = cgroup_path(instance.name)
            assert cgroups.driver().exists(path)
        assert not process_running(pid)
        assert not cgroups.driver().exists(path)
        assert not (containers_dir() / instance.name).exists()
        unstarted = floor.create(InstanceSpec(name=name(), image=built_image))  # never resumed
    finally:
        floor.cleanup()
    assert not process_running(unstarted.pids[0])
    assert leftovers() == []


@pytest.mark.parametrize("variant", [COLD, WARM])
def test_a_bridged_init_joins_the_wired_namespace_and_leaves_nothing(state_dir, built_image,
                                                                      variant):
    """network = "bridge": the init runs in the network namespace the harness wired to
    cvbench0 (eth0 with its leased address, a default route via the bridge), as crun's and
    runc's do; remove takes the veth pair and the lease away."""
    from runtime import network

    floor = with_steps(built_image, floor_plan.STEPS)
    try:
        spec = InstanceSpec(name=name(), image=built_image, network="bridge")
        instance = launch(floor, spec, variant)
        try:
            handle = instance.handle
            pid, address, veth = instance.pids[0], handle.netns.address, \
                handle.netns.attachment.veth
            assert os.readlink(f"/proc/{pid}/ns/net") == \
                os.readlink(f"/proc/self/fd/{handle.netns.fd}")
            dev = Path(f"/proc/{pid}/net/dev").read_text()
            assert "eth0:" in dev and "lo:" in dev
            routes = Path(f"/proc/{pid}/net/route").read_text().splitlines()[1:]
            assert any(line.split()[1] == "00000000" for line in routes)  # via the bridge
            assert (network.leases_dir() / address).exists()
        finally:
            floor.stop(instance)
            floor.remove(instance)
        assert not (network.leases_dir() / address).exists()
        assert not Path(f"/sys/class/net/{veth}").exists()
        bare = with_steps(built_image, [floor_plan.ROOTFS])
        try:
            with pytest.raises(BackendError, match="needs the 'namespaces' step"):
                bare.start(InstanceSpec(name=name(), image=built_image, network="bridge"))
        finally:
            bare.cleanup()
    finally:
        floor.cleanup()
    assert leftovers() == []
    assert not Path(f"/sys/class/net/{network.BRIDGE}").exists()  # nothing else on it here


HARNESS = """
import os, sys, time
from harness.backends.base import InstanceSpec
from harness.backends.floor.backend import FloorBackend
from imagestore.image import load_verified
floor = FloorBackend()
image = load_verified()
floor.prepare(image)
instance = floor.start(InstanceSpec(name=sys.argv[1], image=image))
floor.wait_ready(instance, 20)
print(instance.pids[0], flush=True)
time.sleep(600)
"""


def test_sweeper_removes_what_a_killed_harness_left(state_dir, built_image):
    container = name()
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, container],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        pid = int(harness.stdout.readline())
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    assert process_running(pid) and leftovers()
    cleaned = cvbench("clean")  # every registered sweeper, the floor's among them
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"floor init {container}" in cleaned.stdout
    assert not process_running(pid)
    assert leftovers() == []
    assert sweeper.sweep() == []  # nothing left for a second sweep


def cvbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


BAD_STEPS = """
[suite]
name = "t"
backends = ["floor"]
[backend_options.floor]
steps = "namespaces,cgroupz"
[[scenario]]
kind = "startup"
repetitions = 1
"""


def test_an_unknown_step_stops_the_run_in_one_line(state_dir, tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text(BAD_STEPS)
    result = cvbench("run", str(scenario), "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"cvbench: error: {scenario}: [backend_options.floor]: steps: unknown floor step "
        "'cgroupz', expected one of namespaces, rootfs, cgroups, caps, seccomp"]
    assert not (tmp_path / "results").exists() and leftovers() == []


def test_the_kernel_holds_ours_filter_and_describe_says_so(state_dir, built_image, ours):
    """The filter the floor's init holds, read back by describe() from probe containers, is
    ours' program, cold and warm; the device rules described are ours'."""
    floor = with_steps(built_image, floor_plan.STEPS)
    try:
        described = floor.describe()
    finally:
        floor.cleanup()
    theirs = ours.describe()
    expected = theirs["security"]["kernel_filter"]["cold"]
    assert expected["filters"] == 1, expected
    for variant in (COLD, WARM):
        seen = described["security"]["kernel_filter"][variant]
        assert (seen["filters"], seen["sha256"]) == (1, expected["sha256"]), variant
    assert described["devices"] == theirs["devices"]
    assert leftovers() == []
