"""Interrupt safety at scale: stop a container ramp by Ctrl-C or SIGKILL once 300 containers
exist (one of them usually half made), then `cvbench clean` must return the host to its
prior inventory.

``CVBENCH_INTERRUPT_AT=10000`` interrupts a larger ramp at 10,000 containers instead (a few
minutes per case; see docs/scale.md); the waits grow with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from inventory import Inventory

pytestmark = [pytest.mark.root, pytest.mark.slow]

INTERRUPT_AT = int(os.environ.get("CVBENCH_INTERRUPT_AT", "300"))
RAMP = f"""
[suite]
name = "ramp"
backends = ["ours"]

[[scenario]]
kind = "density"
max_instances = {INTERRUPT_AT + 700}
batch_size = 50
min_mem_available_mib = 0
time_limit_s = 900
"""


def _live_containers(state_dir: Path) -> int:
    directory = state_dir / "containers"
    return len(list(directory.iterdir())) if directory.is_dir() else 0


SLACK_S = INTERRUPT_AT // 20  # more containers: longer ramps, teardowns and sweeps


def _settled(state_dir: Path, before: Inventory, timeout: float = 20.0 + SLACK_S) -> dict:
    """Leftovers once the kernel has finished reaping (namespaces die a moment after exit)."""
    deadline = time.monotonic() + timeout
    while True:
        leftovers = Inventory.take(state_dir).leftovers(before)
        if not leftovers or time.monotonic() > deadline:
            return leftovers
        time.sleep(0.2)


@pytest.mark.timeout(600 + 4 * SLACK_S)
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_interrupted_ramp_then_clean_restores_host(state_dir, tmp_path, signum) -> None:
    scenario = tmp_path / "ramp.toml"
    scenario.write_text(RAMP)
    results_dir = tmp_path / "results"
    before = Inventory.take(state_dir)
    env = {**os.environ, "CVBENCH_STATE_DIR": str(state_dir)}
    run = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--quiet",
         "--results-dir", str(results_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 180 + INTERRUPT_AT // 20
    while _live_containers(state_dir) < INTERRUPT_AT and run.poll() is None:
        assert time.monotonic() < deadline, f"ramp did not reach {INTERRUPT_AT} containers"
        time.sleep(0.05)
    assert run.poll() is None, run.stderr.read()
    run.send_signal(signum)
    run.communicate(timeout=240 + SLACK_S)
    (run_dir,) = results_dir.iterdir()
    metadata = json.loads((run_dir / "metadata.json").read_text())
    expected = "running" if signum == signal.SIGKILL else "incomplete"
    assert metadata["status"] == expected
    clean = subprocess.run([sys.executable, "-m", "harness.cli", "clean"], env=env,
                           capture_output=True, text=True, timeout=240 + SLACK_S)
    assert clean.returncode == 0, clean.stderr
    assert _settled(state_dir, before) == {}
