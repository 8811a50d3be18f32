"""``cvbench-runtime`` driven through its command line on a bundle of cvbench's own image
(root, real namespaces, cgroups, mounts): create, start, state, kill, delete and run, the
state JSON checked against the OCI runtime spec at each step, READY printed by the image's
/init only after ``start``, and nothing left after ``delete``; a config.json it cannot honour
is refused in one line with exit code 2 before anything is made."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import oci_runtime
import pytest

from hostkit import syscalls as sc
from hostkit.procs import wait_exit
from runtime import cgroups

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


@pytest.fixture
def subreaper() -> Iterator[None]:
    """This process as the subreaper of what it starts: a container's init, orphaned when
    ``create`` exits, becomes its child, so the test can reap it and read its exit status."""
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield
    finally:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 0)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _state(root: Path, container_id: str) -> dict:
    result = oci_runtime.run(root, "state", container_id)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def _leftovers(root: Path, container_id: str, cgroup: str) -> list[str]:
    found = []
    if (root / container_id).exists():
        found.append(f"state directory {root / container_id}")
    if cgroups.driver().exists(cgroup):
        found.append(f"cgroup {cgroup}")
    with open("/proc/self/mountinfo") as handle:
        found += [line.strip() for line in handle if str(root) in line]
    return found


def test_create_start_state_kill_delete(tmp_path, root, built_image, state_dir, subreaper):
    name = "cvbench-test-ocicli-life"
    with oci_runtime.bundle(tmp_path, built_image, name) as (made, config):
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            pid_file = tmp_path / "pid"
            with open(tmp_path / "stderr", "w") as stderr:  # the init's too: not a pipe
                created = oci_runtime.run(root, "create", "--bundle", str(made.dir),
                                          "--pid-file", str(pid_file), name, stdout=write_fd,
                                          stderr=stderr)
            os.close(write_fd)
            write_fd = -1
            assert created.returncode == 0, (tmp_path / "stderr").read_text()
            pid = int(pid_file.read_text())
            state = _state(root, name)
            assert state == {"ociVersion": config["ociVersion"], "id": name,
                             "status": "created", "pid": pid, "bundle": str(made.dir),
                             "annotations": config["annotations"],
                             "created": state["created"]}
            cgroup = config["linux"]["cgroupsPath"].lstrip("/")
            assert pid in cgroups.driver().procs(cgroup)
            assert not _readable(read_fd, 0.5), "READY before start"

            assert oci_runtime.run(root, "start", name).returncode == 0
            assert _readable(read_fd, 10)
            assert os.read(read_fd, 100).startswith(b"READY")
            assert _state(root, name)["status"] == "running"
            assert _state(root, name)["pid"] == pid
            again = oci_runtime.run(root, "start", name)
            assert again.returncode == 1 and "running, not created" in again.stderr

            refused = oci_runtime.run(root, "delete", name)
            assert refused.returncode == 1 and "running" in refused.stderr
            assert oci_runtime.run(root, "kill", name, "TERM").returncode == 0
            assert wait_exit(pid, 10)
            _, status = os.waitpid(pid, 0)
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0  # /init's TERM trap
            stopped = _state(root, name)
            assert stopped["status"] == "stopped" and "pid" not in stopped

            assert oci_runtime.run(root, "delete", name).returncode == 0
            assert _leftovers(root, name, cgroup) == []
            gone = oci_runtime.run(root, "state", name)
            assert gone.returncode == 1
            assert gone.stderr.strip() == f"cvbench-runtime: container {name} does not exist"
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
            oci_runtime.run(root, "delete", "--force", name)


def test_limits_and_delete_force(tmp_path, root, built_image, state_dir, subreaper):
    """The config's limits reach the cgroup; ``delete --force`` ends a running container."""
    name = "cvbench-test-ocicli-force"
    with oci_runtime.bundle(tmp_path, built_image, name, memory_limit_mib=64,
                            pids_limit=33) as (made, config):
        assert oci_runtime.run(root, "create", "-b", str(made.dir), name,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                               ).returncode == 0
        assert oci_runtime.run(root, "start", name).returncode == 0
        pid = _state(root, name)["pid"]
        cgroup = config["linux"]["cgroupsPath"].lstrip("/")
        driver = cgroups.driver()
        if driver.mode == "v2":
            memory, pids = driver.root / cgroup / "memory.max", driver.root / cgroup / "pids.max"
        else:
            memory = driver.root / "memory" / cgroup / "memory.limit_in_bytes"
            pids = driver.root / "pids" / cgroup / "pids.max"
        assert memory.read_text().strip() == str(64 << 20)
        assert pids.read_text().strip() == "33"
        assert oci_runtime.run(root, "delete", "--force", name).returncode == 0
        assert wait_exit(pid, 10)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert _leftovers(root, name, cgroup) == []


def test_run_returns_the_exit_code(tmp_path, root, built_image, state_dir):
    name = "cvbench-test-ocicli-run"
    with oci_runtime.bundle(tmp_path, built_image, name,
                            command=("/bin/sh", "-c", "echo out; echo err >&2; exit 7")
                            ) as (made, config):
        result = oci_runtime.run(root, "run", "--bundle", str(made.dir), name)
        assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
        cgroup = config["linux"]["cgroupsPath"].lstrip("/")
        assert _leftovers(root, name, cgroup) == []


def test_a_failing_init_is_reported_by_create(tmp_path, root, built_image, state_dir):
    """A mount whose source does not exist fails in the init, before start: ``create``
    says why in one line, exit 1, and leaves nothing."""
    name = "cvbench-test-ocicli-fail"
    with oci_runtime.bundle(tmp_path, built_image, name) as (made, config):
        mounts = config["mounts"] + [{"destination": "/data", "type": "bind",
                                      "source": str(tmp_path / "missing"),
                                      "options": ["rbind"]}]
        oci_runtime.rewrite(made, {"mounts": mounts})
        result = oci_runtime.run(root, "create", "--bundle", str(made.dir), name)
        assert result.returncode == 1
        assert len(result.stderr.splitlines()) == 1
        assert result.stderr.startswith(f"cvbench-runtime: {name}: the container's init "
                                        "failed: FileNotFoundError: [Errno 2] mount: ")
        assert result.stderr.rstrip().endswith("/rootfs/data)")
        cgroup = config["linux"]["cgroupsPath"].lstrip("/")
        assert _leftovers(root, name, cgroup) == []


def _new_network_namespace() -> int:
    """A descriptor of a new network namespace, made by a thread (this process keeps its own)."""
    made: list[int] = []

    def body() -> None:
        sc.unshare(sc.CLONE_NEWNET)
        made.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return made[0]


def test_a_network_namespace_path_is_joined(tmp_path, root, built_image, state_dir):
    """``linux.namespaces`` network with a ``path`` (what Podman hands a runtime for a bridge
    network): the container runs in that namespace, not a new one, as under crun."""
    name = "cvbench-test-ocicli-netns"
    fd = _new_network_namespace()
    try:
        wanted = os.readlink(f"/proc/self/fd/{fd}")
        path = f"/proc/{os.getpid()}/fd/{fd}"
        with oci_runtime.bundle(tmp_path, built_image, name,
                                command=("/bin/sh", "-c", "readlink /proc/self/ns/net")
                                ) as (made, config):
            namespaces = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
            oci_runtime.rewrite(made, {"linux": {"namespaces": [
                *namespaces, {"type": "network", "path": path}]}})
            result = oci_runtime.run(root, "run", "--bundle", str(made.dir), name)
            assert (result.returncode, result.stderr) == (0, ""), result.stderr
            assert result.stdout.strip() == wanted
            assert wanted != os.readlink("/proc/self/ns/net")
            assert _leftovers(root, name, config["linux"]["cgroupsPath"].lstrip("/")) == []
    finally:
        os.close(fd)


@pytest.mark.parametrize(("change", "field"), [
    ({"hooks": {"createContainer": [{"path": "/bin/true"}]}}, "hooks.createContainer"),
    ({"hooks": {"prestart": [{"path": "true"}]}}, "hooks.prestart[0]"),
    ({"process": {"terminal": True}}, "process.terminal"),
    ({"process": {"user": {"uid": -1, "gid": 0}}}, "process.user.uid"),
    ({"linux": {"sysctl": {"kernel.printk": "1"}}}, "linux.sysctl.kernel.printk"),
    ({"linux": {"namespaces": [{"type": "mount"}, {"type": "ipc",
                                                   "path": "/proc/1/ns/ipc"}]}},
     "linux.namespaces (ipc)"),
    ({"linux": {"cgroupsPath": "system.slice:cvbench:x"}}, "linux.cgroupsPath"),
    ({"linux": {"resources": {"memory": {"limit": 1 << 30, "swap": 2 << 30}}}},
     "linux.resources.memory.swap"),
    ({"mounts": [{"destination": "/x", "type": "nfs", "source": "h:/x"}]}, "mounts[0] (/x)"),
])
def test_what_cannot_be_honoured_is_refused(tmp_path, root, built_image, state_dir, change,
                                            field):
    name = "cvbench-test-ocicli-refuse"
    with oci_runtime.bundle(tmp_path, built_image, name) as (made, config):
        oci_runtime.rewrite(made, change)
        result = oci_runtime.run(root, "create", "--bundle", str(made.dir), name)
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"cvbench-runtime: {field}:"), lines
        assert _leftovers(root, name, config["linux"]["cgroupsPath"].lstrip("/")) == []


def test_global_options_and_bad_input(tmp_path, root):
    log = tmp_path / "log.json"
    refused = oci_runtime.run(root, "--log", str(log), "--log-format", "json",
                              "--systemd-cgroup", "state", "x")
    assert refused.returncode == 2
    assert refused.stderr.startswith("cvbench-runtime: --systemd-cgroup is not supported")
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "--systemd-cgroup" in entry["msg"]
    signal_refused = oci_runtime.run(root, "kill", "x", "SIGNOPE")
    assert (signal_refused.returncode, signal_refused.stderr.strip()) == (
        2, "cvbench-runtime: unknown signal 'SIGNOPE'")
    missing = oci_runtime.run(root, "create", "--bundle", str(tmp_path / "none"), "x")
    assert missing.returncode == 2 and "config.json: no such file" in missing.stderr
    assert not (root / "x").exists()


HOOK = """#!/bin/sh
state=$(cat)
pid=$(echo "$state" | sed 's/.*"pid": *\\([0-9]*\\).*/\\1/')
echo "$1 $(readlink /proc/$pid/ns/net 2>/dev/null) $state" >> {log}
exit {code}
"""


def _hook(tmp_path: Path, name: str, code: int = 0) -> str:
    path = tmp_path / name
    path.write_text(HOOK.format(log=tmp_path / "hooks.log", code=code))
    path.chmod(0o755)
    return str(path)


def test_hooks_run_in_their_stages_with_the_state(tmp_path, root, built_image, state_dir,
                                                  subreaper):
    """prestart and createRuntime hooks see the created init (its own network namespace) in
    the state on their stdin; poststart after start; poststop after delete."""
    name = "cvbench-test-ocicli-hooks"
    with oci_runtime.bundle(tmp_path, built_image, name) as (made, config):
        hook = _hook(tmp_path, "hook")
        oci_runtime.rewrite(made, {"hooks": {
            stage: [{"path": hook, "args": ["hook", stage]}]
            for stage in ("prestart", "createRuntime", "poststart", "poststop")}})
        assert oci_runtime.run(root, "create", "-b", str(made.dir), name,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                               ).returncode == 0
        pid = _state(root, name)["pid"]
        container_netns = os.readlink(f"/proc/{pid}/ns/net")
        assert container_netns != os.readlink("/proc/self/ns/net")
        assert oci_runtime.run(root, "start", name).returncode == 0
        assert oci_runtime.run(root, "delete", "--force", name).returncode == 0
        os.waitpid(pid, 0)
        lines = (tmp_path / "hooks.log").read_text().splitlines()
        stages = [line.split(" ", 1)[0] for line in lines]
        assert stages == ["prestart", "createRuntime", "poststart", "poststop"]
        for line in lines[:2]:
            stage, netns, state = line.split(" ", 2)
            assert netns == container_netns
            assert json.loads(state)["id"] == name and json.loads(state)["pid"] == pid
        assert json.loads(lines[2].split(" ", 2)[2])["status"] == "running"
        assert _leftovers(root, name, config["linux"]["cgroupsPath"].lstrip("/")) == []


def test_a_failing_prestart_hook_fails_create(tmp_path, root, built_image, state_dir):
    name = "cvbench-test-ocicli-hookfail"
    with oci_runtime.bundle(tmp_path, built_image, name) as (made, config):
        oci_runtime.rewrite(made, {"hooks": {"prestart": [{"path": _hook(tmp_path, "bad", 3),
                                                           "args": ["bad", "prestart"]}]}})
        with open(tmp_path / "stderr", "w") as stderr:
            result = oci_runtime.run(root, "create", "-b", str(made.dir), name,
                                     stdout=subprocess.DEVNULL, stderr=stderr)
        assert result.returncode == 1
        assert (tmp_path / "stderr").read_text().strip() == (
            f"cvbench-runtime: {name}: prestart hook {tmp_path / 'bad'} exited with 3")
        assert _leftovers(root, name, config["linux"]["cgroupsPath"].lstrip("/")) == []
