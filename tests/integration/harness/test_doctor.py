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


@pytest.mark.root
@pytest.mark.timeout(120)
def test_a_runtime_named_on_the_command_line_gets_its_binary_checked(state_dir,
                                                                      tmp_path) -> None:
    """``--runtime mycrun=<a copy of crun>``: crun's checks for it, but its own binary's in
    place of crun's, with the version the binary prints."""
    from oci_runtimes import copy_of_crun

    mine = copy_of_crun(tmp_path)
    result = doctor("--runtime", f"mycrun={mine}", "--backend", "mycrun")
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if "runtime mycrun" in line]
    assert "ok" in line and f"{mine}: crun version " in line, line


def test_a_bad_runtime_is_one_line_and_exit_2(tmp_path) -> None:
    result = doctor("--runtime", "mycrun=/bin/true", env={"CVBENCH_STATE_DIR": str(tmp_path)})
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("cvbench: error: --runtime: runtime mycrun: /bin/true: not an OCI "
                           "runtime"), line
