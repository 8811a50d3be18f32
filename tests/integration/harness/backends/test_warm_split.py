"""Warm means the same split for every runtime: after the clock (``resume``), the init of a
warm container of ours, crun and runc does only what crun's ``start`` lets its init do (the
seccomp filter, the descriptors, exec); everything crun's ``create`` does (mounts, the root
switch, /dev, hostname, rlimits, groups, umask, capabilities, no_new_privs) ran before.

Checked by tracing the waiting init with strace from before ``resume`` until its exec: none of
the system calls of the create part may appear in between. The methodology's table says the
same per backend (``describe()["method"]``), and this test checks that table too.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness import backends
from harness.backends.base import WARM_AFTER_CLOCK, InstanceSpec

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

# What a runtime's create does and its start must not: crun 1.8's container_init_setup and
# runc 1.1's linuxStandardInit.Init before their exec fifo.
CREATE_ONLY = frozenset({
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
    "fsconfig", "mount_setattr", "mknod", "mknodat", "symlink", "symlinkat", "sethostname",
    "setdomainname", "setrlimit", "prlimit64", "setgroups", "umask", "capset", "unshare",
    "setns", "keyctl", "chdir", "setsid",
})
CALL = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\w+)\(")

def _attached(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        if re.search(r"^TracerPid:\s+[1-9]", status, re.M):
            return
        time.sleep(0.01)
    raise AssertionError(f"strace did not attach to {pid}")


def _calls_until_exec(trace: str) -> list[str]:
    """The system calls' names in strace's output up to the first execve, which ends the
    init's own code."""
    names = []
    for line in trace.splitlines():
        found = CALL.match(line.strip())
        if found is None:
            continue
        names.append(found.group(2))
        if found.group(2) in ("execve", "execveat"):
            return names
    raise AssertionError(f"no execve in the trace:\n{trace[-2000:]}")


@pytest.mark.parametrize("name", ["ours", "crun", "runc"])
def test_after_the_clock_only_what_cruns_start_does(state_dir, built_image, tmp_path, name):
    backend = backends.create(name)
    backend.prepare(built_image)
    instance = None
    try:
        spec = InstanceSpec(name=f"cvbench-test-split-{uuid.uuid4().hex[:6]}", image=built_image)
        instance = backend.create(spec)
        init = instance.handle.spare if name == "ours" else instance.handle.pid
        assert init
        out = tmp_path / "trace"
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-o", str(out), "-p", str(init)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _attached(init)
            backend.resume(instance)
            backend.wait_ready(instance, 20)
        finally:
            tracer.terminate()
            tracer.wait(10)
        calls = _calls_until_exec(out.read_text())
        done_after = sorted(set(calls) & CREATE_ONLY)
        assert done_after == [], f"{name} after the clock: {done_after}"
        assert calls[-1] in ("execve", "execveat")
        # the methodology's table says so too: one step that lets the init go on, then the
        # shared sentence, nothing else
        inside = backend.describe()["method"]["variants"]["warm"]["inside_clock"]
        assert inside.endswith("; " + WARM_AFTER_CLOCK), inside
        assert ";" not in inside.removesuffix("; " + WARM_AFTER_CLOCK), inside
    finally:
        if instance is not None:
            backend.stop(instance)
            backend.remove(instance)
        backend.cleanup()
