"""Where containers' cgroups go: the parent follows the state directory."""

from __future__ import annotations

from runtime.scopes import cgroup_parent


def test_cgroup_parent_depends_on_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "a"))
    first = cgroup_parent()
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "b"))
    assert first != cgroup_parent() and first.startswith("cvbench-")
