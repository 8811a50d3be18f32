"""An OCI runtime by configuration, for real: a copy of crun under another name and path
(``<tmp>/cvbench-crun2/mycrun``) runs a startup scenario cold and warm through ``cvbench run
--runtime``, its samples, ratios, metadata and report carry its name and version, and
``cvbench clean`` leaves nothing of it, after a clean run and after a SIGKILLed harness (with
its binary still there, and gone)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from inventory import Inventory
from oci_runtimes import copy_of_crun

from harness.backends import registry
from harness.backends.oci import runtimes
from harness.backends.oci.bundle import runtime_root
from hostkit import syscalls

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[5]
REPETITIONS = 3
STARTUP = f"""
[suite]
name = "mine"
backends = ["process"]

[[scenario]]
kind = "startup"
variants = ["cold", "warm"]
repetitions = {REPETITIONS}
warmup = 1
timeout_s = 30
"""


def _cvbench(state_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "CVBENCH_STATE_DIR": str(state_dir), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def _settled(state_dir: Path, before: Inventory, timeout: float = 20.0) -> dict:
    """Leftovers once the kernel has finished reaping (namespaces die a moment after exit)."""
    deadline = time.monotonic() + timeout
    while True:
        leftovers = Inventory.take(state_dir).leftovers(before)
        if not leftovers or time.monotonic() > deadline:
            return leftovers
        time.sleep(0.2)


def _crun_version() -> str:
    """The host's crun version, read here from its own first line (``crun version 1.8.1``)."""
    first = subprocess.run(["crun", "--version"], capture_output=True, text=True,
                           check=True).stdout.splitlines()[0]
    found = re.fullmatch(r"crun version (\S+)", first)
    assert found, first
    return found[1]


def _nothing_of(state_dir: Path, name: str) -> None:
    assert not runtime_root(name).exists()
    assert not (state_dir / "oci-state" / f"{name}.binary").exists()


def test_a_startup_run_on_a_copy_of_crun_then_clean_leaves_nothing(state_dir, tmp_path):
    mine = copy_of_crun(tmp_path)
    scenario = tmp_path / "mine.toml"
    scenario.write_text(STARTUP)
    before = Inventory.take(state_dir)
    run = _cvbench(state_dir, "run", str(scenario), "--runtime", f"mycrun={mine}", "--quiet",
                   "--results-dir", str(tmp_path / "results"), "--report")
    assert run.returncode == 0, run.stderr
    run_dir = Path(run.stdout.strip().splitlines()[-1])

    samples = pd.read_csv(run_dir / "samples.csv")
    ready = samples[samples.metric == "start_to_ready_s"]
    counts = ready.groupby(["backend", "variant"]).size().to_dict()
    assert counts == {("mycrun", "cold"): REPETITIONS, ("mycrun", "warm"): REPETITIONS,
                      ("process", "cold"): REPETITIONS, ("process", "warm"): REPETITIONS}
    assert (ready.value > 0).all() and (ready.value < 30).all()
    mycrun = samples[samples.backend == "mycrun"]
    assert {"harness_s", "stop_s", "cleanup_s"} <= set(mycrun.metric)  # as crun's

    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "complete"
    assert metadata["runtimes"] == {"mycrun": str(mine)}  # given on the command line
    described = metadata["backends"]["mycrun"]
    assert described["runtime"] == "mycrun" and described["binary"] == str(mine)
    assert described["version"] == _crun_version()
    assert described["version_output"].splitlines()[0] == f"crun version {_crun_version()}"
    assert described["options_flavor"] == "crun"
    assert described["cgroup_manager_args"] == ["--cgroup-manager=cgroupfs"]
    assert "cvbench-oci" in json.dumps(described["cgroup_layout"])  # crun's and runc's parent
    assert described["cgroup_controllers"]  # the probe container ran on it
    assert set(described["method"]["variants"]) == {"cold", "warm"}
    assert "mycrun start <id>" in described["method"]["variants"]["warm"]["inside_clock"]

    normalized = pd.read_csv(run_dir / "normalized.csv")  # ratios to the container floor
    assert {"mycrun"} <= set(normalized.backend)
    summary = (run_dir / "report" / "summary.md").read_text()
    assert "mycrun" in summary

    # the run cleaned up; `cvbench clean` finds nothing of mycrun left, and the host is as it was
    _nothing_of(state_dir, "mycrun")
    clean = _cvbench(state_dir, "clean")
    assert clean.returncode == 0, clean.stderr
    assert "mycrun" not in clean.stdout + clean.stderr
    assert _settled(state_dir, before) == {}


CRASHER = """
import sys, time
from harness.backends import create
from harness.backends.base import InstanceSpec
from harness.backends.oci import runtimes
from imagestore import image
runtimes.declare("mycrun", sys.argv[1])
backend = create("mycrun")
img = image.resolve()
backend.prepare(img)
for index in range(2):
    instance = backend.start(InstanceSpec(name=f"{sys.argv[2]}{index}", image=img))
    backend.wait_ready(instance, 20)
backend.create(InstanceSpec(name=f"{sys.argv[2]}created", image=img))  # warm, never started
print("STARTED", flush=True)
time.sleep(3600)
"""


def _reap_orphans(timeout: float = 10.0) -> None:
    """Reap the orphaned launcher (this process adopted it) once the sweep ended it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):  # children left, none exited yet
                time.sleep(0.1)
        except ChildProcessError:  # none left
            return


@pytest.mark.parametrize("binary_left", [True, False], ids=["binary-left", "binary-gone"])
def test_clean_after_a_sigkilled_harness_sweeps_a_user_runtime(state_dir, tmp_path,
                                                               binary_left):
    """The harness declared mycrun and is killed with three containers live; `cvbench clean`
    (a process that never heard of mycrun) deletes them with the recorded binary, or, where
    that binary is gone, kills their processes through their cgroups and removes their state;
    either way nothing is left, its record and state directory included."""
    assert "mycrun" not in registry.names()
    mine = copy_of_crun(tmp_path)
    prefix = f"cvbench-test-rt-{uuid.uuid4().hex[:6]}-"
    before = Inventory.take(state_dir)
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)  # adopt the orphaned launcher
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", CRASHER, str(mine), prefix], cwd=REPO,
            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO),
                                         "CVBENCH_STATE_DIR": str(state_dir)})
        assert child.stdout.readline().strip() == b"STARTED"
        live = sorted(p.name for p in runtime_root("mycrun").iterdir())
        assert live == [f"{prefix}0", f"{prefix}1", f"{prefix}created"]
        assert runtimes.record_path("mycrun").read_text() == str(mine)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        if not binary_left:
            mine.unlink()
        clean = _cvbench(state_dir, "clean")
        assert clean.returncode == 0, clean.stderr
        _reap_orphans()
    finally:
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 0)
    said = clean.stdout + clean.stderr
    for suffix in ("0", "1", "created"):
        assert f"mycrun container {prefix}{suffix}" in said, said
    assert ("no binary to delete it with" in said) is not binary_left, said
    assert "runtime mycrun: its record and state directory" in said, said
    _nothing_of(state_dir, "mycrun")
    assert _settled(state_dir, before) == {}
    again = _cvbench(state_dir, "clean")
    assert "mycrun" not in again.stdout + again.stderr
