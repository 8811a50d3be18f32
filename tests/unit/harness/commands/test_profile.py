"""``cvbench profile`` (harness.commands.profile): its checks before anything starts, its
reading of perf's and bpftrace's outputs (recorded ones), and a whole run over the fake
backend through the runner and the density kind's batch launch. No root needed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness import cli, hostinfo, hostkind, runner
from harness.commands import profile
from harness.kinds import registry as kinds

# `perf report --stdio --sort sym -g none --percentage absolute`, as a profile wrote them
PERF_SELF = """\
# Samples: 11K of event 'cpu-clock'
# Event count (approx.): 5728500000
#
# Overhead  Symbol
# ........  .....................................
#
     0.12%  [.] 0x000000000000962c
     0.10%  [k] cgroup_mkdir
     0.05%  [k] __x64_sys_mount
"""
PERF_CHILDREN = """\
# Event count (approx.): 5728500000
#
# Children      Self  Symbol
# ........  ........  ..........................................
#
     0.15%     0.00%  [.] 0x0000000200000001
     0.40%     0.05%  [k] __x64_sys_mount
"""
# the bpftrace program's maps at its END (syscall 165 is mount, 83 mkdir, 999 unnamed)
BPFTRACE_OUT = """\
Attaching 3 probes...


@calls[165]: 8
@calls[83]: 40
@calls[999]: 4
@ns[165]: 400000
@ns[83]: 2000000
@ns[999]: 4000
"""


def test_perf_costs_are_ms_per_launch_of_the_event_count() -> None:
    costs = profile.perf_costs(PERF_SELF, launches=4, children=False)
    # 5728.5 ms of cpu-clock in all: 0.10% of it over 4 launches
    assert costs["[k] cgroup_mkdir"] == pytest.approx(5728.5 * 0.001 / 4)
    assert set(costs) == {"[.] 0x000000000000962c", "[k] cgroup_mkdir", "[k] __x64_sys_mount"}
    with_callees = profile.perf_costs(PERF_CHILDREN, launches=4, children=True)
    assert with_callees["[k] __x64_sys_mount"] == pytest.approx(5728.5 * 0.004 / 4)
    assert profile.perf_costs("no samples", launches=4, children=False) == {}


def test_syscall_costs_are_us_and_calls_per_launch_by_name() -> None:
    costs = profile.syscall_costs(BPFTRACE_OUT, launches=4)
    assert costs == {"mount": (100.0, 2.0), "mkdir": (500.0, 10.0), "999": (1.0, 1.0)}


def test_the_tables_compare_the_first_and_last_level() -> None:
    own = {100: {"[k] cgroup_mkdir": 0.1, "[k] a": 0.5},
           8000: {"[k] cgroup_mkdir": 0.9, "[k] a": 0.4}}
    total = {100: {"[k] __x64_sys_mount": 1.0}, 8000: {"[k] __x64_sys_mount": 3.0}}
    lines = profile.shares_table(own, total)
    grown = lines.index("| function (self) | at 100 | at 8000 |") + 2
    assert lines[grown] == "| [k] cgroup_mkdir | 0.100 | 0.900 |"  # grew most: first
    assert "| __x64_sys_mount | 1.000 | 3.000 |" in lines
    assert lines[-1] == "| total | 0.60 | 1.30 |"
    calls = profile.syscalls_table({100: {"mount": (10.0, 2.0)}, 8000: {"mount": (30.0, 2.0),
                                                                         "mkdir": (50.0, 1.0)}})
    assert calls[2:] == ["| mkdir | 0 | 50 | 1.0 |", "| mount | 10 | 30 | 2.0 |"]
    assert profile.launch_table([(100, 1.234, 2.5, 0.4)])[2] == "| 100 | 1.23 | 2.50 | 0.40 |"


def test_bpftrace_follows_this_process_the_fork_server_and_its_children() -> None:
    program = profile.bpftrace_program([10, 20])
    assert "/pid == 10 || pid == 20 || curtask->real_parent->tgid == 20/" in program


def _nothing_runs(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(runner, "run_suite", refuse)


@pytest.mark.parametrize(("args", "message"), [
    (["--levels", "100,100"], "--levels: expected increasing counts, got 100,100"),
    (["--levels", "8000,100"], "--levels: expected increasing counts, got 8000,100"),
    (["--levels", "0,100"], "--levels: expected a value >= 1, got 0"),
    (["--levels", "100,10001"], "--levels: expected a value <= 10000, got 10001"),
    (["--backend", "qemu"], "--backend: expected a container backend, got 'qemu'"),
    (["--option", "no_such=1"], "unknown option 'no_such' for backend 'ours'"),
])
def test_bad_input_is_one_line_exit_2_before_anything_starts(monkeypatch, capsys, args,
                                                             message) -> None:
    _nothing_runs(monkeypatch)
    assert cli.main(["profile", "--no-perf", "--no-bpftrace", *args]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"cvbench: error: {message}")


def test_missing_tools_are_named_with_the_way_around(monkeypatch, tmp_path, capsys) -> None:
    _nothing_runs(monkeypatch)
    monkeypatch.setattr("shutil.which", lambda _tool: None)
    assert cli.main(["profile", "--no-bpftrace"]) == 2
    assert "perf is not installed (apt-get install linux-perf), or pass --no-perf" in \
        capsys.readouterr().err
    monkeypatch.setattr("shutil.which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(profile, "TRACEFS", tmp_path / "none")
    assert cli.main(["profile", "--no-perf"]) == 2
    assert "bpftrace needs tracefs" in capsys.readouterr().err


def test_a_profile_of_the_fake_backend_ramps_by_batches_and_reports(
        tmp_path, state_dir, fake_backends, monkeypatch, capsys) -> None:
    monkeypatch.setattr(hostkind, "check", lambda: None)
    monkeypatch.setattr(hostinfo, "collect", lambda: {"host": {"hostname": "test"}})
    code = cli.main(["profile", "--backend", "fake", "--levels", "3,8", "--sample", "2",
                     "--batch", "2", "--no-perf", "--no-bpftrace", "--quiet",
                     "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    assert out.splitlines()[-1] == str(run_dir)
    samples = pd.read_csv(run_dir / "samples.csv")
    steps = samples.groupby("metric").step.apply(list).to_dict()
    # up to 3 in batches of 2 (2, 3), 2 profiled (5), up to 8 (7, 8), 2 profiled (10)
    assert steps == {"launch_s": [2, 3, 7, 8], "profiled_launch_s": [5, 10]}
    assert (samples.kind == "launch-profile").all() and (samples.backend == "fake").all()
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "complete" and "cvbench profile" in metadata["scenario_text"]
    launch = (run_dir / "launch.md").read_text().splitlines()
    assert [row.split(" | ")[0] for row in launch[2:]] == ["| 3", "| 8"]
    assert not (run_dir / "shares.md").exists() and not (run_dir / "syscalls.md").exists()
    assert "launch-profile" not in kinds.names()  # registered for the run only
