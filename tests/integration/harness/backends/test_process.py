"""End to end through the CLI with the `process` backend: run, report, interrupt, clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

SCENARIO = """
[suite]
name = "t"
backends = ["process"]

[[scenario]]
kind = "startup"
repetitions = {repetitions}
warmup = 1
"""


def cvbench(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, **kwargs
    )


def _workloads(state_dir: Path) -> list[int]:
    """Pids of running /init workloads from the test's image."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(state_dir).encode() in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.timeout(120)
def test_run_then_report(state_dir, tmp_path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.format(repetitions=20))
    result = cvbench("run", str(scenario), "--quiet", "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "complete"
    assert metadata["scenario_text"] == scenario.read_text()
    for key in ("host", "accel", "versions", "git_commit", "backends", "image"):
        assert key in metadata
    samples = pd.read_csv(run_dir / "samples.csv")
    latencies = samples[samples.metric == "start_to_ready_s"]
    assert len(latencies) == 20 and (latencies.value > 0).all()
    assert (run_dir / "normalized.csv").is_file()
    report = cvbench("report", str(run_dir))
    assert report.returncode == 0, report.stderr
    for name in ("startup-start_to_ready_s.png", "startup-start_to_ready_s.svg", "summary.md"):
        assert (run_dir / "report" / name).stat().st_size > 0
    assert "start_to_ready_s" in (run_dir / "report" / "summary.md").read_text()
    assert _workloads(state_dir) == []


@pytest.mark.timeout(120)
def test_ctrl_c_marks_incomplete_and_cleans_up(state_dir, tmp_path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.format(repetitions=1_000_000))
    results_dir = tmp_path / "results"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--quiet",
         "--results-dir", str(results_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not list(results_dir.glob("*/metadata.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    refused = cvbench("clean")  # never sweeps away a run that is still going on
    assert refused.returncode == 1 and "in progress" in refused.stderr
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    (run_dir,) = results_dir.iterdir()
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "incomplete"
    samples = pd.read_csv(run_dir / "samples.csv")
    assert len(samples) > 0
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]
    assert _workloads(state_dir) == []
    assert cvbench("clean").returncode == 0


@pytest.mark.timeout(60)
def test_sigkill_then_clean_leaves_nothing(state_dir, tmp_path) -> None:
    script = (
        "import sys, time\n"
        "from harness.backends.process import ProcessBackend\n"
        "from harness.backends.base import InstanceSpec\n"
        "from imagestore import image\n"
        "b = ProcessBackend(); img = image.load_verified(); b.prepare(img)\n"
        "for i in range(3):\n"
        "    inst = b.start(InstanceSpec(name=f'cvbench-kill-{i}', image=img))\n"
        "    b.wait_ready(inst, 10)\n"
        "print('up', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "up"
    assert len(_workloads(state_dir)) >= 3
    holder.kill()
    holder.wait()
    result = cvbench("clean")
    assert result.returncode == 0, result.stderr
    assert "cvbench-kill-0" in result.stdout
    deadline = time.monotonic() + 10
    while _workloads(state_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _workloads(state_dir) == []
    assert not list((state_dir / "process").glob("*.pid"))


@pytest.mark.timeout(60)
def test_clean_finds_a_workload_whose_pid_file_was_never_written(state_dir) -> None:
    """SIGKILL between spawn and the pid file: the workload is still found and killed."""
    from harness.backends.base import InstanceSpec
    from harness.backends.process import ProcessBackend, sweep
    from imagestore import image

    backend = ProcessBackend()
    img = image.load_verified()
    backend.prepare(img)
    instance = backend.start(InstanceSpec(name="cvbench-no-pid-file", image=img))
    backend.wait_ready(instance, 10)
    instance.handle.pid_file.unlink()
    removed = " ".join(sweep())
    assert f"pid {instance.pids[0]}" in removed
    os.waitpid(instance.pids[0], 0)  # our child: reap it
    deadline = time.monotonic() + 10
    while _workloads(state_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _workloads(state_dir) == []
    backend.live.clear()


def test_unknown_backend_option_is_usage_error(state_dir, tmp_path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.format(repetitions=1) + "[backend_options.process]\nbogus = 1\n")
    result = cvbench("run", str(scenario), "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 2
    assert "[backend_options.process]" in result.stderr and "bogus" in result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("run", "/nonexistent.toml"),
        ("run", "scenarios/startup.toml", "--backend", "no-such-backend"),
        ("report", "/nonexistent-run"),
        ("image", "verify", "no-such-image"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(state_dir, args) -> None:
    result = cvbench(*args, cwd=Path(__file__).resolve().parents[4])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cvbench: error:")


DENSITY_AND_MEMORY = """
[suite]
name = "dm"
backends = ["process"]

[[scenario]]
kind = "density"
max_instances = 40
batch_size = 10
min_mem_available_mib = 0

[[scenario]]
kind = "memory"
instances = 5
settle_s = 0.2
"""


@pytest.mark.timeout(120)
def test_density_and_memory_scenarios(state_dir, tmp_path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(DENSITY_AND_MEMORY)
    result = cvbench("run", str(scenario), "--quiet", "--report",
                     "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    samples = pd.read_csv(run_dir / "samples.csv")
    density = samples[samples.scenario == "density"]
    alive = density[density.metric == "instances_alive"].value.tolist()
    assert alive == [10, 20, 30, 40]
    assert len(density[density.metric == "launch_s"]) == 4
    assert density[density.metric == "max_instances_alive"].value.tolist() == [40]
    memory = samples[samples.scenario == "memory"]
    assert len(memory[memory.metric == "mem_pss_bytes"]) == 5
    assert (memory[memory.metric == "mem_pss_bytes"].value > 0).all()
    metadata = json.loads((run_dir / "metadata.json").read_text())
    (ramp,) = metadata["density"]["density"]["process"]  # one ramp (ramps = 1)
    assert ramp["stopped_by"] == "max_instances" and ramp["ramp"] == 0
    for chart in ("density-density.png", "memory-memory.png"):
        assert (run_dir / "report" / chart).stat().st_size > 0
    assert _workloads(state_dir) == []
