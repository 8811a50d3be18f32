"""The cgroup v2 device filter and the clone3 join, on this host's cgroup2 tree (root, real
kernel objects).

The cgroup2 mount is found in /proc/self/mountinfo wherever it is (``/sys/fs/cgroup`` on a v2
host, ``/sys/fs/cgroup/unified`` on a hybrid one): cgroup BPF and CLONE_INTO_CGROUP need no
controller, so both run for real on a hybrid host's controller-less unified tree too. There the
v1 devices cgroup of a test process is the root's (allow all), so what is refused is refused by
the eBPF program alone.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from containers import container_name

from hostkit import mountinfo
from hostkit import syscalls as sc
from runtime import cgroups, device_filter, devices
from runtime.container import Runtime
from runtime.forkserver import PROJECT_ROOT
from runtime.spec import default_spec

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

DEFAULT_RULES = devices.container_rules([devices.DENY_ALL])  # what every container gets


def _cgroup2_root() -> Path:
    points = [m.point for m in mountinfo.read() if m.fstype == "cgroup2"]
    assert points, "no cgroup2 hierarchy is mounted on this host"
    return Path(points[0])


@pytest.fixture
def v2_cgroup():
    """A ``cvbench-test-devfilter-*`` parent in the cgroup2 tree and a driver on it; removed."""
    driver = cgroups.V2Driver(_cgroup2_root())
    parent = f"cvbench-test-devfilter-{uuid.uuid4().hex[:8]}"
    yield driver, parent
    for name in driver.containers(parent):
        driver.kill(f"{parent}/{name}")
        driver.remove(f"{parent}/{name}")
    driver.remove_parent(parent)
    assert not (driver.root / parent).exists()


def _probe_in(procs: str, directory: Path) -> dict[str, str]:
    """Fork a child that joins ``procs``, then tries device nodes; what each attempt gave."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        results: dict[str, str] = {}
        try:
            os.close(read_fd)
            with open(procs, "w") as handle:
                handle.write("0")

            def attempt(name: str, action) -> None:
                try:
                    action()
                    results[name] = "ok"
                except OSError as error:
                    results[name] = errno.errorcode[error.errno]

            def opened(path: str, flags: int = os.O_RDONLY):
                return lambda: os.close(os.open(path, flags))

            attempt("open /dev/null rw", opened("/dev/null", os.O_RDWR))
            attempt("open /dev/zero", opened("/dev/zero"))
            attempt("mknod c 1:1", lambda: os.mknod(directory / "mem", stat.S_IFCHR | 0o600,
                                                     os.makedev(1, 1)))
            attempt("open c 1:1", opened(str(directory / "mem")))
            attempt("mknod c 1:3", lambda: os.mknod(directory / "null", stat.S_IFCHR | 0o666,
                                                     os.makedev(1, 3)))
            attempt("open c 1:3 rw", opened(str(directory / "null"), os.O_RDWR))
            attempt("mknod b 7:0", lambda: os.mknod(directory / "loop", stat.S_IFBLK | 0o600,
                                                     os.makedev(7, 0)))
            attempt("open b 7:0", opened(str(directory / "loop")))
            if os.path.exists("/dev/loop-control"):
                attempt("open /dev/loop-control", opened("/dev/loop-control", os.O_RDWR))
            os.write(write_fd, json.dumps(results).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        data = reader.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_default_rules_are_enforced_on_the_cgroup2_tree(v2_cgroup, tmp_path):
    driver, parent = v2_cgroup
    path = f"{parent}/c1"
    driver.create(path, cgroups.Limits(devices=DEFAULT_RULES))
    directory = driver.root / path
    ids = device_filter.attached(directory)
    assert len(ids) == 1  # one program, attached to the container's own directory
    cgroup_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags, _ = sc.bpf_prog_query(cgroup_fd, sc.BPF_CGROUP_DEVICE)
    finally:
        os.close(cgroup_fd)
    assert flags == sc.BPF_F_ALLOW_MULTI  # as crun and runc attach theirs

    [procs] = driver.join_files(path)
    results = _probe_in(procs, tmp_path)
    assert results["open /dev/null rw"] == "ok"
    assert results["open /dev/zero"] == "ok"
    assert results["mknod c 1:1"] == "ok"  # "c *:* m": any character node may be made
    assert results["open c 1:1"] == "EPERM"  # /dev/mem's numbers: not in the allow list
    assert results["mknod c 1:3"] == "ok"
    assert results["open c 1:3 rw"] == "ok"  # a node made for /dev/null's numbers is allowed
    assert results["mknod b 7:0"] == "ok"  # "b *:* m"
    assert results["open b 7:0"] == "EPERM"
    if "open /dev/loop-control" in results:
        assert results["open /dev/loop-control"] == "EPERM"  # c 10:237


def test_without_the_program_nothing_is_refused(v2_cgroup, tmp_path):
    """The control: the same probe in a cgroup with no device rules opens what it may."""
    driver, parent = v2_cgroup
    path = f"{parent}/plain"
    driver.create(path, cgroups.Limits())
    assert device_filter.attached(driver.root / path) == []
    [procs] = driver.join_files(path)
    results = _probe_in(procs, tmp_path)
    # the kernel reaches the driver (ENXIO: this kernel has no /dev/mem or loop0): no refusal
    assert results["open c 1:1"] in ("ok", "ENXIO")
    assert results["open b 7:0"] in ("ok", "ENXIO")


def test_no_descriptor_is_kept(v2_cgroup):
    """The cgroup holds the program (open files are capped: none per live container)."""
    driver, parent = v2_cgroup
    path = f"{parent}/nofd"
    before = sorted(os.listdir("/proc/self/fd"))
    driver.create(path, cgroups.Limits(devices=DEFAULT_RULES))
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert len(device_filter.attached(driver.root / path)) == 1
    driver.remove(path)
    assert not driver.exists(path)


CLONE_PROBE = textwrap.dedent("""
    import sys; sys.path.insert(0, {root!r})
    import json, os, signal, threading
    from runtime.forkserver import clone_into
    fd = os.open({directory!r}, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    got = []
    signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
    pid = clone_into(fd)
    if pid == 0:
        try:
            signal.raise_signal(signal.SIGUSR1)
            worker = threading.Thread(target=got.append, args=(2,))
            worker.start(); worker.join()
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(7)
            status = os.waitpid(grandchild, 0)[1]
            line = [l for l in open("/proc/self/cgroup").read().splitlines()
                    if l.startswith("0::")]
            print(json.dumps({{"pid": os.getpid(), "native": threading.get_native_id(),
                              "cgroup": line, "got": got, "grandchild": status >> 8}}),
                  flush=True)
        finally:
            os._exit(0)
    print(json.dumps({{"child": pid, "status": os.waitpid(pid, 0)[1]}}), flush=True)
""")


def test_clone_into_a_cgroup_from_python(v2_cgroup):
    """The fork server's clone3: the child is born in the cgroup, and its Python works (signals,
    threads, fork) after PyOS_AfterFork_Child."""
    driver, parent = v2_cgroup
    path = f"{parent}/born"
    driver.create(path, cgroups.Limits())
    code = CLONE_PROBE.format(root=PROJECT_ROOT, directory=str(driver.root / path))
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         timeout=30, check=True).stdout.splitlines()
    child, parent_view = json.loads(out[0]), json.loads(out[1])
    assert parent_view == {"child": child["pid"], "status": 0}
    assert child["native"] == child["pid"]
    assert child["cgroup"] == [f"0::/{path}"]
    assert child["got"] == [1, 2] and child["grandchild"] == 7


class _NoJoinFiles(cgroups.V2Driver):
    """cgroup.procs paths nobody can write: a launch that writes them fails."""

    def join_files(self, path: str, limits: cgroups.Limits | None = None, *,
                   by_itself: bool = False) -> list[str]:
        return ["/nonexistent/cvbench/cgroup.procs"]


class _NoBirthDirectory(cgroups.V2Driver):
    """A directory clone3 cannot open: the fork server falls back to fork + cgroup.procs."""

    def birth_directory(self, path: str) -> str:
        return "/nonexistent/cvbench"


NAMESPACES = ("mnt", "uts", "ipc", "net")
SCRIPT = ("for kind in " + " ".join(NAMESPACES) + "; do readlink /proc/self/ns/$kind; done; "
          "head -c 4 /dev/zero | wc -c; mknod /tmp/mem c 1 1 && echo MADE; "
          "head -c 1 /tmp/mem 2>&1 || echo OPEN-REFUSED; echo DONE")


@pytest.mark.parametrize("driver_class", [_NoJoinFiles, _NoBirthDirectory],
                         ids=["born-in-cgroup", "fallback-join"])
def test_cold_container_on_the_cgroup2_tree(state_dir, built_image, driver_class):
    """ours' cold start with a v2 driver: the device filter is enforced inside the container
    (CAP_MKNOD held), and the init is born in its cgroup by clone3, in its own namespaces
    made by that clone3 (the join files are unwritable, so a write would fail the launch),
    or, where clone3 cannot be used, joins by writing cgroup.procs after unsharing them."""
    with Runtime() as rt:
        rt.cgroups = driver_class(_cgroup2_root())
        name = container_name("devfilter")
        spec = default_spec(built_image, name, args=["/bin/sh", "-c", SCRIPT])
        container = rt.create(spec, name)
        try:
            assert container.plan is not None and container.plan.cgroup_dir
            directory = rt.cgroups.root / container.cgroup
            assert len(device_filter.attached(directory)) == 1
            rt.start(container)
            fd, container.ready_fd = container.ready_fd, None
            assert fd is not None
            with os.fdopen(fd, "rb") as reader:
                output = reader.read().decode()
            info = rt.wait(container, 10)
        finally:
            rt.destroy(container)
        assert not (rt.cgroups.root / container.cgroup).exists()
    assert info is not None and info.code == 0, output
    words = output.split()
    host = [os.readlink(f"/proc/self/ns/{kind}") for kind in NAMESPACES]
    inside = words[:len(NAMESPACES)]
    assert [name.split(":")[0] for name in inside] == list(NAMESPACES), output
    assert not set(inside) & set(host), (inside, host)
    assert words[len(NAMESPACES):] == ["4", "MADE", "head:", "/tmp/mem:", "Operation", "not",
                              "permitted", "OPEN-REFUSED", "DONE"], output
