"""``sweep_all()`` after a crash: SIGKILL a process that holds running containers, clean, and
check that mounts, netns, veths, cgroups, processes and directories are as they were."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import network
from runtime.scopes import cgroup_parent
from runtime.sweep import sweep_all as sweep

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[3]

OWNER = """
import json, os, signal, sys
sys.path.insert(0, sys.argv[1])
from imagestore import image
from runtime.container import Runtime
from runtime.spec import default_spec

img = image.Image("default", sys.argv[2], image.Path(sys.argv[3]))
rt = Runtime()
made = []
for i, (net, mem) in enumerate([("none", None), ("none", 32), ("bridge", 32)]):
    c = rt.run(default_spec(img, "x", network=net, memory_limit_mib=mem), f"cvbench-test-crash-{i}")
    made.append({"name": c.name, "pid": c.pid, "cgroup": c.cgroup,
                 "veth": c.net.veth if c.net else None,
                 "address": c.net.address if c.net else None,
                 "netns": os.readlink(f"/proc/{c.pid}/ns/net"),
                 "mntns": os.readlink(f"/proc/{c.pid}/ns/mnt")})
print(json.dumps({"containers": made, "server": rt.server.pid}), flush=True)
signal.pause()
"""


def _namespaces() -> set[str]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            for kind in ("net", "mnt"):
                try:
                    found.add(os.readlink(f"/proc/{entry}/ns/{kind}"))
                except OSError:
                    pass
    return found


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def _links() -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def _mounts_under(path: Path) -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if str(path) in line]


def test_clean_after_owner_is_killed(tmp_path, built_image, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(state))
    parent = cgroup_parent()
    mounts_before = _mounts_under(state)
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(ROOT), built_image.digest, str(built_image.rootfs)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "CVBENCH_STATE_DIR": str(state)},
    )
    try:
        line = owner.stdout.readline()
        assert line, "the owner process failed"
        held = json.loads(line)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    containers = held["containers"]
    assert all(os.path.exists(f"/proc/{c['pid']}") for c in containers)  # leftovers
    veth = next(c["veth"] for c in containers if c["veth"])
    assert veth in _links()

    removed = sweep()

    assert any(c["name"] in " ".join(removed) for c in containers)
    for c in containers:  # processes
        try:
            assert "/init" not in Path(f"/proc/{c['pid']}/cmdline").read_text()
        except OSError:
            pass
    assert _gone(held["server"])  # the fork server left with its owner
    namespaces = _namespaces()  # netns and mount ns died with their processes
    assert not {c["netns"] for c in containers} & namespaces
    assert not {c["mntns"] for c in containers} & namespaces
    assert veth not in _links()  # veths
    assert not (
        network.leases_dir() / next(c["address"] for c in containers if c["address"])
    ).exists()
    for controller in ("memory", "pids", "cpu"):  # cgroups
        assert not (Path("/sys/fs/cgroup") / controller / parent).exists()
    assert not (Path("/sys/fs/cgroup") / parent).exists()
    assert _mounts_under(state) == mounts_before == []  # mounts
    assert not any((state / "containers").iterdir())  # directories
    assert sweep() == [] or all("bridge" in r for r in sweep())  # idempotent


def test_sweep_leaves_live_owners_alone(state_dir, built_image):
    from runtime.container import Runtime
    from runtime.spec import default_spec

    with Runtime() as rt:
        container = rt.run(default_spec(built_image, "live"), "cvbench-test-live-owner")
        removed = sweep()
        assert not any("cvbench-test-live-owner" in r for r in removed)
        assert container.running


def test_sweep_removes_directories_caught_mid_creation(state_dir, built_image):
    """A SIGKILL while a container's directory is being made leaves a ``.new-<owner>-...``
    directory (maybe without its owner link yet) or an ownerless one: both are swept at once,
    while those of a live owner stay."""
    from hostkit.paths import containers_dir
    from hostkit.procs import proc_start_time
    from runtime.containerdir import CREATING_PREFIX, OWNER_LINK

    root = containers_dir()
    root.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    me = f"{os.getpid()}-{proc_start_time(os.getpid())}"
    half_made = root / f"{CREATING_PREFIX}{dead.pid}-1-cvbench-test-half"  # no owner link yet
    half_made.mkdir()
    ownerless = root / "cvbench-test-ownerless"
    ownerless.mkdir()
    in_progress = root / f"{CREATING_PREFIX}{me}-cvbench-test-mine"
    in_progress.mkdir()
    os.symlink(me.replace("-", ":"), in_progress / OWNER_LINK)
    try:
        removed = " ".join(sweep())
        assert str(half_made) in removed and not half_made.exists()
        assert str(ownerless) in removed and not ownerless.exists()
        assert in_progress.exists()
    finally:
        import shutil

        shutil.rmtree(in_progress, ignore_errors=True)
