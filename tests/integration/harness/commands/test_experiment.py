"""The experiment subcommands for real, at a small size, through the CLI (root; run them under
the host lock): ``cvbench items`` over ``ours``, two of its variants and the floor;
``cvbench profile`` of ``ours`` at two levels under perf (and bpftrace where tracefs is
mounted); ``cvbench idle`` of bare QEMU guests. Each leaves a complete run directory, nothing
failed, and no instance behind (the state directory's containers and the host's QEMUs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import psutil
import pytest
from vm_env import private_vm_state

from harness import cli
from harness.backends import registry
from harness.commands import items, profile

pytestmark = [pytest.mark.root]


def _qemus() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"])
            if (p.info["name"] or "").startswith("qemu-system")}


def _run_dir(out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, dict]:
    """The one run directory under ``out`` (the last line printed), complete, nothing failed,
    nothing left to clean."""
    (run_dir,) = out.iterdir()
    assert capsys.readouterr().out.splitlines()[-1] == str(run_dir)
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "complete"
    assert not metadata.get("failures") and not metadata.get("cleanup_failures")
    return run_dir, metadata


def _no_container_left(state_dir: Path) -> None:
    containers = state_dir / "containers"
    assert not containers.exists() or not any(containers.iterdir())


@pytest.mark.timeout(600)
def test_items_measures_ours_two_variants_and_the_floor(state_dir, tmp_path, capsys) -> None:
    code = cli.main(["items", "--instances", "4", "--settle", "0", "--quiet", "--variants",
                     "ours-no-seccomp,ours-no-mounts", "--out", str(tmp_path)])
    assert code == 0
    run_dir, metadata = _run_dir(tmp_path, capsys)
    samples = pd.read_csv(run_dir / "samples.csv")
    assert set(samples.backend) == {"ours", "ours-no-seccomp", "ours-no-mounts", "process"}
    measured = samples[samples.metric == "mem_host_delta_per_instance_bytes"]
    assert measured.backend.value_counts().to_dict() == dict.fromkeys(
        ("ours", "ours-no-seccomp", "ours-no-mounts", "process"), 1)
    assert metadata["backends"]["ours-no-seccomp"]["without"] == "seccomp"
    table = (run_dir / items.REPORT).read_text()
    assert "| seccomp filter |" in table and "| /proc, /dev/pts (2 superblocks) |" in table
    # the filter's BPF program lives in vmalloc space: ours has it, the variant has not
    vmalloc = samples[samples.metric == "mem_item_vmalloc_bytes"].set_index("backend").value
    assert vmalloc["ours"] > vmalloc["ours-no-seccomp"]
    assert "ours-no-seccomp" not in registry.names()
    _no_container_left(state_dir)


@pytest.mark.timeout(600)
def test_profile_ramps_ours_and_profiles_each_level(state_dir, tmp_path, capsys) -> None:
    tools = [*([] if shutil.which("perf") else ["--no-perf"]),
             *([] if shutil.which("bpftrace") and profile.TRACEFS.is_dir()
               else ["--no-bpftrace"])]
    code = cli.main(["profile", "--levels", "4,8", "--sample", "4", "--batch", "2", "--quiet",
                     *tools, "--out", str(tmp_path)])
    assert code == 0
    run_dir, _ = _run_dir(tmp_path, capsys)
    samples = pd.read_csv(run_dir / "samples.csv")
    assert samples[samples.metric == "profiled_launch_s"].step.tolist() == [6, 8, 10, 12]
    assert (samples.value > 0).all()
    launch = (run_dir / "launch.md").read_text().splitlines()
    assert [row.split(" | ")[0] for row in launch[2:]] == ["| 4", "| 8"]
    pids = (run_dir / "pids-8.txt").read_text().strip().split(",")
    assert len(pids) == 2 + 4  # this process, the fork server, the 4 profiled containers
    if "--no-perf" not in tools:
        shares = (run_dir / "shares.md").read_text()
        assert "| function (self) | at 4 | at 8 |" in shares
    if "--no-bpftrace" not in tools:
        assert "| system call |" in (run_dir / "syscalls.md").read_text()
    _no_container_left(state_dir)


@pytest.mark.timeout(600)
def test_idle_reads_each_guests_qemu_threads(tmp_path, capsys) -> None:
    before = _qemus()
    with private_vm_state("idle"):  # a state dir QEMU's user can reach
        code = cli.main(["idle", "--backend", "qemu", "--instances", "2", "--settle", "1",
                         "--seconds", "2", "--quiet", "--out", str(tmp_path)])
    assert code == 0
    run_dir, metadata = _run_dir(tmp_path, capsys)
    figures = metadata["idle"]["qemu"]
    assert figures["instances"] == 2 and figures["idle_cpu_percent_p50"] > 0
    assert any(thread.startswith("CPU 0/") for thread in figures["wakeups_per_s_p50"])
    samples = pd.read_csv(run_dir / "samples.csv")
    assert samples[samples.metric == "idle_cpu_percent"].instance.tolist() == [1, 2]
    assert _qemus() <= before  # every guest it booted is gone
