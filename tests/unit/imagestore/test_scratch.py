"""Scratch directories of image builds and imports: named for their owner, and swept by
``cvbench clean`` once the owner is gone (a SIGKILLed build or import)."""

from __future__ import annotations

import os
import subprocess

from harness import clean
from imagestore import scratch


def test_clean_removes_the_scratch_of_a_dead_owner_and_keeps_a_live_ones(tmp_path,
                                                                          monkeypatch) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    mine = [scratch.make("image"), scratch.make("import")]
    assert all(str(os.getpid()) in path.name for path in mine)
    assert mine[0].parent != mine[1].parent  # a build next to the images, an import not
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = [path.parent / path.name.replace(f"-{os.getpid()}-", f"-{gone.pid}-")
            for path in mine]
    for path in dead:
        path.mkdir()
        (path / "layer").write_bytes(b"half an image")
    unrelated = tmp_path / "cvbench-import-notapid"
    unrelated.mkdir()
    lines = clean.clean_all(force=True)
    assert {line for line in lines if "scratch" in line} == {
        f"image scratch directory {path}" for path in dead}
    assert not any(path.exists() for path in dead)
    assert all(path.is_dir() for path in mine)  # their owner, this process, lives
    assert unrelated.is_dir()  # not a name a build or import makes
