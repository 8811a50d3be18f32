"""Each floor step's needs, checked against a fake /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends.floor import host
from harness.backends.floor import plan as floor_plan

ALL = frozenset(floor_plan.STEPS)


def fake_proc(tmp_path: Path, namespaces=host.NAMESPACE_FILES, overlay=True,
              seccomp=True) -> Path:
    for kind in namespaces:
        (tmp_path / "self" / "ns").mkdir(parents=True, exist_ok=True)
        (tmp_path / "self" / "ns" / kind).touch()
    (tmp_path / "filesystems").write_text("nodev\tproc\n" + ("nodev\toverlay\n" if overlay
                                                              else ""))
    if seccomp:
        (tmp_path / "sys/kernel/seccomp").mkdir(parents=True)
        (tmp_path / "sys/kernel/seccomp/actions_avail").write_text("kill_process\n")
    return tmp_path


def test_a_host_with_everything_gives_every_step(tmp_path):
    assert host.missing(ALL, fake_proc(tmp_path)) is None


@pytest.mark.parametrize("lacking, step, words", [
    ({"namespaces": ("pid", "mnt", "uts", "ipc", "net")}, "namespaces", "cgroup namespace"),
    ({"overlay": False}, "rootfs", "overlayfs"),
    ({"seccomp": False}, "seccomp", "seccomp filters"),
])
def test_a_step_the_host_lacks_is_named_in_one_line(tmp_path, lacking, step, words):
    proc = fake_proc(tmp_path, **lacking)
    problem = host.missing(ALL, proc)
    assert problem is not None and f"step '{step}'" in problem and words in problem
    assert "\n" not in problem
    assert host.missing(ALL - {step}, proc) is None  # not asked for: no problem
