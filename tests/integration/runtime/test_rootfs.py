"""The two ways ``ours`` switches into a container's root (``runtime.rootfs``): pivot_root(2),
as crun and runc do, and the move onto the fork server's skeleton root (the default, without
pivot_root's walk over every thread on the host). Both must leave the host's tree out of the
container's mount namespace: a process that escapes the chroot (root, CAP_SYS_CHROOT) finds
nothing of the host, unlike runc's ``--no-pivot``. And both pass the isolation probe with the
same mounts. The same holds when the runtime itself runs chrooted (``make test`` in a
debootstrap root entered with ``chroot``): its root is then not its mount namespace's root,
and an escape must still find neither the chroot's tree nor the outer machine's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.backends.base import InstanceSpec
from harness.backends.ours import OursBackend

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[3]
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


def _assert_escape_finds_nothing(pid: int) -> None:
    """The probe's escape from container ``pid`` finds no host tree, and every probe check
    but the shared findings (every runtime alike) passed."""
    names, verdict = _escape(pid)
    assert verdict == "host-hidden", names
    # ".." ends on the container's own root (the kernel steps onto the mount stacked on
    # the skeleton's root) or in the empty skeleton: nothing else is above the root
    own = set(os.listdir(f"/proc/{pid}/root"))
    assert set(names) <= own | {"host"}, names
    probe = Path(f"/proc/{pid}/root/tmp/probe.out").read_text().splitlines()
    failed = [line for line in probe
              if line.split(" ")[1:3] != ["no", "shared:"] and line.split(" ")[1:2] == ["no"]]
    assert not failed, failed


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
        _assert_escape_finds_nothing(pid)
        mounts = {line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text()
                  .splitlines()}
        assert "/" in mounts and "/proc" in mounts
        assert not any(m.startswith("/host") for m in mounts), mounts  # skeleton stays hidden
        backend.stop(instance)
        backend.remove(instance)
    finally:
        backend.cleanup()


# Run as a chrooted harness: in a private mount namespace (``unshare -m``), make a chroot
# directory holding the whole host (``mount-point``: an rbind of / on it, so the new root is a
# mount of its own; ``directory``: a plain directory with an rbind of each of /'s
# directories in it and /'s symlinks copied, as a debootstrap root is a plain directory),
# chroot into it, start one container of ours, print its pid, wait for a line on stdin, then
# stop and remove it.
CHROOTED = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from hostkit import syscalls as sc
    target, kind, pivot = {target!r}, {kind!r}, {pivot!r}
    if kind == "mount-point":
        sc.mount("/", target, None, sc.MS_BIND | sc.MS_REC)
    else:
        for name in sorted(os.listdir("/")):
            path = os.path.join("/", name)
            if os.path.islink(path):
                os.symlink(os.readlink(path), os.path.join(target, name))
            elif os.path.isdir(path) and not target.startswith(path + "/"):
                os.makedirs(os.path.join(target, name), exist_ok=True)
                sc.mount(path, os.path.join(target, name), None, sc.MS_BIND | sc.MS_REC)
            elif os.path.isdir(path):  # the one holding the chroot: bound, minus the loop
                os.makedirs(os.path.join(target, name), exist_ok=True)
                sc.mount(path, os.path.join(target, name), None, sc.MS_BIND | sc.MS_REC)
    os.chroot(target)
    os.chdir("/")
    from harness.backends.base import InstanceSpec
    from harness.backends.ours import OursBackend
    from imagestore import image as images
    image = images.build()
    backend = OursBackend(pivot_root=pivot)
    backend.prepare(image)
    try:
        instance = backend.start(InstanceSpec(name={name!r}, image=image,
                                              command=("/bin/sh", "-c", {probe!r})))
        backend.wait_ready(instance, 20)
        print(instance.pids[0], flush=True)
        sys.stdin.readline()
        backend.stop(instance)
        backend.remove(instance)
    finally:
        backend.cleanup()
""")


@contextmanager
def chrooted_container(kind: str, pivot_root: bool) -> Iterator[int]:
    """The pid of a container of ours started by a harness chrooted as ``kind`` says."""
    holder = Path(tempfile.mkdtemp(prefix="cvbench-test-chroot-", dir="/var/tmp"))
    code = CHROOTED.format(root=str(ROOT), target=str(holder), kind=kind, pivot=pivot_root,
                           name=f"cvbench-test-chroot-{uuid.uuid4().hex[:8]}", probe=PROBE)
    harness = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                sys.executable, "-c", code], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert harness.stdout is not None and harness.stdin is not None
        line = harness.stdout.readline()
        if not line:
            harness.wait(timeout=30)
            raise AssertionError(f"the chrooted harness failed: {harness.stderr.read()}")
        yield int(line)
        harness.stdin.write("\n")
        harness.stdin.flush()
        assert harness.wait(timeout=30) == 0, harness.stderr.read() if harness.stderr else ""
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        # the binds lived in the harness's private namespace: only empty directories and
        # symlinks are left (rmdir and unlink, never a recursive removal)
        for entry in holder.iterdir():
            if entry.is_symlink():
                entry.unlink()
            else:
                entry.rmdir()
        holder.rmdir()


@pytest.mark.parametrize("kind", ["mount-point", "directory"])
@pytest.mark.parametrize("pivot_root", [False, True], ids=["move", "pivot_root"])
def test_chrooted_runtime_escape_finds_nothing(state_dir, built_image, kind, pivot_root
                                               ) -> None:
    """Started from a chrooted process, ours still leaves nothing above the container's root:
    an escape ends on the container's own root (or the empty skeleton), never in the chroot's
    tree nor in the outer machine's."""
    with chrooted_container(kind, pivot_root) as pid:
        _assert_escape_finds_nothing(pid)
