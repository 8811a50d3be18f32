"""`cvbench doctor`: a table of host facts; non-zero exit naming the fix when a need is unmet."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def doctor(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "doctor", *args],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
    )


@pytest.mark.timeout(120)
def test_table_lists_host_facts(state_dir) -> None:
    result = doctor("--backend", "process,ours")
    assert result.returncode == 0, result.stdout + result.stderr
    for fact in ("root", "namespaces", "overlayfs", "cgroups", "ksm", "libvirtd", "accel", "crun",
                 "runc"):
        assert fact in result.stdout
    assert "hybrid" in result.stdout or "v1" in result.stdout or "v2" in result.stdout
    assert "tcg" in result.stdout or "kvm" in result.stdout


@pytest.mark.timeout(120)
def test_missing_need_fails_and_names_the_fix(tmp_path) -> None:
    result = doctor("--backend", "process", env={"CVBENCH_STATE_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "process needs image: cvbench image build" in result.stdout


def test_unknown_backend_is_usage_error() -> None:
    result = doctor("--backend", "nosuchengine")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("cvbench: error:")


@pytest.mark.root
@pytest.mark.timeout(120)
def test_engines_report_version_and_daemon(state_dir) -> None:
    result = doctor("--backend", "docker,podman,lxc")
    assert result.returncode == 0, result.stdout + result.stderr
    for fact in ("dockerd 20.10", "containerd", "runtimes", "podman 4.", "liblxc 5.",
                 "seccomp profile"):
        assert fact in result.stdout, fact
