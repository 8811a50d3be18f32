"""An engine asked for but unavailable: one line on stderr, exit code 2, nothing started."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.root]

SUITE = """
[suite]
name = "unavailable"
backends = ["{backend}"]
{options}

[[scenario]]
kind = "startup"
repetitions = 1
warmup = 0
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend,options,expected", [
    ("docker", '[backend_options.docker]\nsocket = "/nonexistent/docker.sock"',
     "docker: dockerd does not answer at /nonexistent/docker.sock"),
    ("podman", "", "crun-v1view missing"),
], ids=["docker-no-daemon", "podman-no-crun-wrapper"])
def test_unavailable_engine_is_one_line_before_anything_starts(state_dir, tmp_path, backend,
                                                                options, expected) -> None:
    scenario = tmp_path / "suite.toml"
    scenario.write_text(SUITE.format(backend=backend, options=options))
    env = {**os.environ, "CVBENCH_STATE_DIR": str(state_dir),
           "CVBENCH_CACHE_DIR": str(tmp_path / "empty-cache")}
    result = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(scenario),
                             "--results-dir", str(tmp_path / "results")],
                            capture_output=True, text=True, env=env, timeout=100)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
