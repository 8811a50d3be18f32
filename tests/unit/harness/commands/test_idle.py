"""``cvbench idle`` (harness.commands.idle): reading threads' CPU time and context switches
from /proc (a fake tree), the figures of a window, and a whole run over a fake backend whose
instances are this test's process, through the runner and the density kind's batch launch.
No root needed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from fakes import FakeBackend

from harness import cli, hostinfo, hostkind, runner
from harness.backends import registry
from harness.backends.base import Instance, InstanceSpec
from harness.commands import idle

TICKS = os.sysconf("SC_CLK_TCK")


def _task(proc: Path, pid: int, tid: int, name: str, ticks: tuple[int, int],
          switches: tuple[int, int]) -> None:
    """One thread as /proc shows it: utime and stime are stat's fields 14 and 15."""
    task = proc / str(pid) / "task" / str(tid)
    task.mkdir(parents=True)
    fields = ["S", "1", *["0"] * 9, str(ticks[0]), str(ticks[1]), *["0"] * 30]
    (task / "stat").write_text(f"{tid} ({name}) {' '.join(fields)}\n")
    (task / "status").write_text(f"Name:\t{name}\nvoluntary_ctxt_switches:\t{switches[0]}\n"
                                 f"nonvoluntary_ctxt_switches:\t{switches[1]}\n")


def test_thread_stats_sum_the_threads_of_each_name(tmp_path) -> None:
    _task(tmp_path, 7, 7, "qemu-system-x86", (TICKS, TICKS), (10, 2))
    _task(tmp_path, 7, 8, "CPU 0/TCG", (3 * TICKS, 0), (100, 5))
    _task(tmp_path, 7, 9, "call_rcu", (0, 0), (1, 0))
    _task(tmp_path, 7, 10, "CPU 0/TCG", (TICKS, 0), (50, 0))  # a second vCPU of that name
    assert idle.thread_stats(7, tmp_path) == {
        "qemu-system-x86": (2.0, 12), "CPU 0/TCG": (4.0, 155), "call_rcu": (0.0, 1)}
    assert idle.thread_stats(8, tmp_path) == {}  # gone


def test_idle_figures_are_percent_of_a_cpu_and_wakeups_per_second() -> None:
    before = {1: {"CPU 0/TCG": (1.0, 100), "main": (0.5, 10)}, 2: {"CPU 0/TCG": (2.0, 0)},
              3: {"main": (0.0, 0)}}
    after = {1: {"CPU 0/TCG": (1.2, 300), "main": (0.5, 30), "new": (0.1, 10)},
             2: {"CPU 0/TCG": (2.1, 100)}, 3: {}}  # 3 ended in the window
    cpu, wakeups = idle.idle_figures(before, after, elapsed=10.0)
    assert cpu == pytest.approx([3.0, 1.0])  # (0.2 + 0.1) s of 10 s; 0.1 s of 10 s
    assert {name: [round(rate, 6) for rate in rates] for name, rates in wakeups.items()} == {
        "CPU 0/TCG": [20.0, 10.0], "main": [2.0], "new": [1.0]}
    figures = idle.summary(cpu, wakeups, boots=[2.0, 3.0, 1.0])
    assert figures == {"instances": 2, "idle_cpu_percent_p50": 2.0,
                       "idle_cpu_percent_mean": 2.0,
                       "wakeups_per_s_p50": {"CPU 0/TCG": 15.0, "main": 2.0, "new": 1.0},
                       "pair_launch_s_p50": 2.0}
    assert idle.line("qemu", figures) == (
        "qemu: 2.0% of a CPU per idle instance (median of 2; mean 2.0%), wake-ups/s: "
        "CPU 0/TCG 15, main 2, new 1; two to READY: 2.0 s")


class PidBackend(FakeBackend):
    """A fake backend whose every instance is a sleeping process (a real /proc entry)."""

    name = "fakepid"

    def start(self, spec: InstanceSpec) -> Instance:
        instance = super().start(spec)
        instance.handle = subprocess.Popen(["sleep", "60"])
        instance.pids = [instance.handle.pid]
        return instance

    def stop(self, instance: Instance) -> None:
        instance.handle.kill()
        instance.handle.wait()
        super().stop(instance)


@pytest.fixture
def pid_backend():
    registry.register(registry.BackendInfo("fakepid", f"{__name__}:PidBackend",
                                           registry.CONTAINER, "this process, per instance"))
    yield
    registry.unregister("fakepid")


def test_an_idle_run_launches_pairs_then_reads_each_instance(tmp_path, state_dir, pid_backend,
                                                             monkeypatch, capsys) -> None:
    monkeypatch.setattr(hostkind, "check", lambda: None)
    monkeypatch.setattr(hostinfo, "collect", lambda: {"host": {"hostname": "test"}})
    code = cli.main(["idle", "--backend", "fakepid", "--instances", "3", "--settle", "0",
                     "--seconds", "0.05", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    samples = pd.read_csv(run_dir / "samples.csv")
    assert samples[samples.metric == "batch_launch_s"].step.tolist() == [2, 3]  # 2, then 1
    assert samples[samples.metric == "idle_cpu_percent"].instance.tolist() == [1, 2, 3]
    figures = json.loads((run_dir / "metadata.json").read_text())["idle"]["fakepid"]
    assert figures["instances"] == 3 and figures["idle_cpu_percent_p50"] >= 0
    assert list(figures["wakeups_per_s_p50"]) == ["sleep"]  # its one thread, by /proc's name
    assert out == [idle.line("fakepid", figures), str(run_dir)]


def test_a_backend_option_a_backend_does_not_take_starts_nothing(monkeypatch, capsys) -> None:
    monkeypatch.setattr(runner, "run_suite", lambda *_a, **_k: pytest.fail("the run started"))
    assert cli.main(["idle", "--backend", "qemu,ours", "--option", "acpi=true"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("cvbench: error: unknown option 'acpi' for backend 'ours'")
