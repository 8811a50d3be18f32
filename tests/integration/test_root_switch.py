"""The two ways ``ours`` switches into a container's root (``runtime.rootfs``): pivot_root(2),
as crun and runc do, and the move onto the fork server's skeleton root (the default, without
pivot_root's walk over every thread on the host). Both must leave the host's tree out of the
container's mount namespace: a process that escapes the chroot (root, CAP_SYS_CHROOT) finds
nothing of the host, unlike runc's ``--no-pivot``. And both pass the isolation probe with the
same mounts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from harness.backends.base import InstanceSpec
from harness.backends.ours import OursBackend

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
PROBE = (ROOT / "tests" / "isolation_probe.sh").read_text()

# Enter the container's mount namespace and root (as a process of the container would be),
# then escape the chroot the classic way: chroot into a subdirectory while the working
# directory stays above it, then ".." as far as it goes. Prints what is there.
ESCAPE = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from hostkit import syscalls as sc
    root = os.open("/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    sc.setns(os.open("/proc/{pid}/ns/mnt", os.O_RDONLY), sc.CLONE_NEWNS)
    os.fchdir(root)
    os.chroot(".")
    assert os.path.exists("/init"), "not in the container's root"
    os.chroot("bin")
    for _ in range(64):
        os.chdir("..")
    names = sorted(os.listdir("."))
    print(" ".join(names))
    print("host-visible" if os.path.exists("etc/debian_version") else "host-hidden")
""")


def _escape(pid: int) -> tuple[list[str], str]:
    done = subprocess.run([sys.executable, "-S", "-c", ESCAPE.format(root=str(ROOT), pid=pid)],
                          capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    names, verdict = done.stdout.splitlines()
    return names.split(), verdict


@pytest.mark.parametrize("pivot_root", [False, True], ids=["move", "pivot_root"])
def test_chroot_escape_finds_no_host_tree(state_dir, built_image, pivot_root) -> None:
    backend = OursBackend(pivot_root=pivot_root)
    backend.prepare(built_image)
    spec = InstanceSpec(name=f"cvbench-test-root-{uuid.uuid4().hex[:8]}", image=built_image,
                        command=("/bin/sh", "-c", PROBE))
    try:
        instance = backend.start(spec)
        backend.wait_ready(instance, 20)
        pid = instance.pids[0]
        names, verdict = _escape(pid)
        assert verdict == "host-hidden", names
        # ".." ends on the container's own root (the kernel steps onto the mount stacked on
        # the skeleton's root) or in the empty skeleton: nothing else is above the root
        own = set(os.listdir(f"/proc/{pid}/root"))
        assert set(names) <= own | {"host"}, names
        probe = Path(f"/proc/{pid}/root/tmp/probe.out").read_text().splitlines()
        failed = [line for line in probe if line.split(" ")[1:2] == ["no"]]
        assert not failed, failed
        mounts = {line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text()
                  .splitlines()}
        assert "/" in mounts and "/proc" in mounts
        assert not any(m.startswith("/host") for m in mounts), mounts  # skeleton stays hidden
        backend.stop(instance)
        backend.remove(instance)
    finally:
        backend.cleanup()
