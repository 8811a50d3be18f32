"""runc's ``restore`` variant against the real kernel (root): where ``criu check`` passes (the
v2 test VM: Debian 12's criu on its 6.1 kernel), two restores of one checkpoint each answer
the ping with READY, run with the same isolation as a cold container, and leave the
checkpoint's files as they were and nothing behind; where it fails or criu is missing (the
development machine), runc offers no restore and a scenario asking for one gets the one
line naming the host's reason, before anything starts."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from harness import scenario
from harness.backends import restorable
from harness.backends.base import RESTORE, BackendError, Instance, InstanceSpec
from harness.backends.oci import cgroup, checkpoint
from harness.backends.oci.bundle import bundles_dir, runtime_root
from harness.backends.oci.sweeper import sweep
from harness.backends.runc import RuncBackend
from hostkit.paths import PREFIX

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

# What a restored container's init must share with a cold one's (/proc/<pid>/status)
STATUS_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
                 "Seccomp_filters")
NAMESPACES = ("ipc", "mnt", "net", "pid", "uts", "cgroup")
# The first CRIU that restores prctl(PR_SET_NO_NEW_PRIVS) (checkpoint-restore/criu#2228);
# Debian 12's 3.17.1 restores a process without it (docs/findings/restore.md).
CRIU_WITH_NO_NEW_PRIVS = (3, 19)
LIMIT_MIB = 64


def _gone_or_zombie(pid: int) -> bool:
    """Whether a stopped container's init has ended: reaped (no /proc entry, read in one go
    so a reap between a check and a read is no error) or a zombie awaiting its reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _criu_version() -> tuple[int, ...]:
    out = subprocess.run([shutil.which("criu") or "criu", "--version"], capture_output=True,
                         text=True, check=True).stdout
    found = re.search(r"Version: (\d+)\.(\d+)", out)
    assert found, out
    return tuple(int(part) for part in found.groups())


def _files(root: Path) -> dict[str, str]:
    """Every regular file under ``root``, by relative path: its sha256 and mode."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = f"{digest} {path.stat().st_mode:o}"
    return found


def _status(pid: int) -> dict[str, str]:
    fields = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return {key: fields.get(key, "") for key in STATUS_FIELDS}


def _isolation(pid: int) -> dict[str, object]:
    """What the container's init runs with: its status fields, and which namespaces are
    its own (not the host's)."""
    own = {kind: os.readlink(f"/proc/{pid}/ns/{kind}") != os.readlink(f"/proc/1/ns/{kind}")
           for kind in NAMESPACES}
    return {**_status(pid), "own_namespaces": own}


def _leftovers(prefix: str) -> list[str]:
    """Bundles, checkpoints, runc containers and cgroups of the test's containers left."""
    left = [path.name for path in bundles_dir().glob(f"{prefix}*")]
    left += [path.name for path in bundles_dir().glob(f"{PREFIX}checkpoint-*")]
    left += [path.name for path in runtime_root("runc").glob(f"{PREFIX}*")]
    for pattern in (f"{prefix}*", f"{PREFIX}checkpoint-*"):
        left += [str(path) for path in Path("/sys/fs/cgroup").glob(f"**/{pattern}")]
    return left


def _memory_max(pid: int) -> str:
    path = Path(f"/proc/{pid}/cgroup").read_text().strip().split("::", 1)[1]
    return Path(f"/sys/fs/cgroup{path}/memory.max").read_text().strip()


def test_runc_restores_twice_from_one_checkpoint_or_says_why_not(state_dir, built_image
                                                                  ) -> None:
    problem = restorable.criu_problem()
    backend = RuncBackend()
    asked = scenario.make("startup", name="r", variants=("cold", "restore"))
    if problem is not None:  # this host cannot: the refusal, and nothing to restore with
        assert RESTORE not in backend.variants
        assert restorable.refusal("runc", backend, asked) == \
            f"scenario 'r': backend 'runc' cannot restore: {problem}"
        with pytest.raises(BackendError, match="no restore start"):
            backend.create(InstanceSpec(name="cvbench-test-x", image=built_image), RESTORE)
        return
    assert RESTORE in backend.variants
    assert restorable.refusal("runc", backend, asked) is None
    prefix = f"cvbench-test-restore-{uuid.uuid4().hex[:6]}-"
    backend.prepare(built_image)
    try:
        cold = backend.start(InstanceSpec(name=f"{prefix}cold", image=built_image,
                                          memory_limit_mib=LIMIT_MIB))
        backend.wait_ready(cold, 30)
        expected = _isolation(cold.pids[0])
        assert _memory_max(cold.pids[0]) == str(LIMIT_MIB << 20)
        assert expected["NoNewPrivs"] == "1" and expected["Seccomp"] == "2"
        if _criu_version() < CRIU_WITH_NO_NEW_PRIVS:  # the one thing an older CRIU loses
            expected["NoNewPrivs"] = "0"
        backend.stop(cold)
        backend.remove(cold)
        sealed: dict[str, str] | None = None
        pids = []
        for turn in range(2):
            name = f"{prefix}{turn}"
            instance: Instance = backend.create(
                InstanceSpec(name=name, image=built_image, memory_limit_mib=LIMIT_MIB), RESTORE)
            assert isinstance(instance.handle, checkpoint.Staged)
            shot = instance.handle.checkpoint
            if sealed is None:
                sealed = _files(shot.bundle.dir)
                assert any(key.startswith(f"{checkpoint.IMAGES}/") for key in sealed)
            assert not (bundles_dir() / name).exists()  # nothing of it before the clock
            backend.resume(instance)
            backend.wait_ready(instance, 30)  # the restored responder's answer to the ping
            pid = instance.pids[0]
            pids.append(pid)
            assert _isolation(pid) == expected, (_isolation(pid), expected)
            assert cgroup.path(name) in Path(f"/proc/{pid}/cgroup").read_text()  # its own
            assert _memory_max(pid) == str(LIMIT_MIB << 20)  # with the spec's limit
            backend.stop(instance)
            assert _gone_or_zombie(pid)
            backend.remove(instance)
            assert not (bundles_dir() / name).exists()
            assert _files(shot.bundle.dir) == sealed  # the checkpoint as it was made
        assert len(set(pids)) == 2
    finally:
        backend.cleanup()
    assert _leftovers(prefix) == []
    assert not cgroup.driver(cgroup.host_mode()).exists(cgroup.path(f"{prefix}0"))


def test_a_restore_that_fails_says_criu_s_reason_and_leaves_nothing(state_dir, built_image
                                                                     ) -> None:
    """A checkpoint whose images are damaged: that restore fails in one line naming CRIU's
    (or runc's) error, the instance's bundle is gone; ``cvbench clean``'s sweep then finds
    only the checkpoint the backend still holds (as after a killed harness) and removes it."""
    if restorable.criu_problem() is not None:
        assert RESTORE not in RuncBackend().variants
        return
    prefix = f"cvbench-test-restore-{uuid.uuid4().hex[:6]}-"
    backend = RuncBackend()
    backend.prepare(built_image)
    try:
        instance = backend.create(InstanceSpec(name=f"{prefix}bad", image=built_image), RESTORE)
        images = instance.handle.checkpoint.images
        inventory = images / "inventory.img"
        inventory.chmod(0o644)
        inventory.write_bytes(b"\0" * 16)
        with pytest.raises(BackendError, match=f"runc restore {prefix}bad failed: ") as error:
            backend.resume(instance)
        assert "\n" not in str(error.value)
        assert not (bundles_dir() / f"{prefix}bad").exists()
        backend.remove(instance)
        swept = sweep()  # the run's checkpoint left as a killed harness would leave it
        assert f"bundle {instance.handle.checkpoint.bundle.dir}" in swept
        assert not any(prefix in line for line in swept)
    finally:
        backend.cleanup()
    assert _leftovers(prefix) == []
