"""Interrupt safety of the engine backends: SIGKILL a density ramp on Docker, Podman or LXC
(Docker and Podman also with cvbench-runtime: docker-ours, podman-ours) once a few containers
run, then `cvbench clean` must leave no container, image, network, helper process, mount,
namespace, link or cgroup behind (the small mirror of ``test_density_interrupt.py`` for the
engines)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_inventory import ENGINES, EngineInventory, count_container_inits, require
from inventory import Inventory

pytestmark = [pytest.mark.root, pytest.mark.slow]

INTERRUPT_AT = 6
RAMP = """
[suite]
name = "engine-ramp"
backends = ["{backend}"]

[[scenario]]
kind = "density"
max_instances = 60
batch_size = 3
warmup_batch = false
min_mem_available_mib = 0
time_limit_s = 300
network = "bridge"
"""


def _settled(state_dir: Path, before: Inventory, engines_before: EngineInventory,
             timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        leftovers = {**Inventory.take(state_dir).leftovers(before),
                     **EngineInventory.take(state_dir).leftovers(engines_before)}
        if not leftovers or time.monotonic() > deadline:
            return leftovers
        time.sleep(0.5)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("backend", ENGINES)
def test_sigkilled_engine_ramp_then_clean_restores_host(state_dir, tmp_path, backend) -> None:
    require(backend)
    scenario = tmp_path / "ramp.toml"
    scenario.write_text(RAMP.format(backend=backend))
    results_dir = tmp_path / "results"
    before, engines_before = Inventory.take(state_dir), EngineInventory.take(state_dir)
    inits_before = count_container_inits()
    env = {**os.environ, "CVBENCH_STATE_DIR": str(state_dir)}
    run = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--quiet",
         "--results-dir", str(results_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 180
    while count_container_inits() - inits_before < INTERRUPT_AT and run.poll() is None:
        assert time.monotonic() < deadline, f"{backend} ramp did not reach {INTERRUPT_AT}"
        time.sleep(0.05)
    assert run.poll() is None, run.stderr.read()
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)
    (run_dir,) = results_dir.iterdir()
    assert json.loads((run_dir / "metadata.json").read_text())["status"] == "running"
    assert EngineInventory.take(state_dir).leftovers(engines_before)  # something to clean
    clean = subprocess.run([sys.executable, "-m", "harness.cli", "clean"], env=env,
                           capture_output=True, text=True, timeout=240)
    assert clean.returncode == 0, clean.stderr
    assert backend.removesuffix("-ours") in clean.stdout, clean.stdout  # docker-ours: docker
    assert _settled(state_dir, before, engines_before) == {}
