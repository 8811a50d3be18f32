"""Thresholds from run-to-run spread: the runs' own, robust to one disturbed run."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_runs import make_run

from harness import spread
from harness.gate.compare import compare_runs
from harness.gate.thresholds import Thresholds


def test_spread_is_the_runs_own_and_one_disturbed_run_does_not_set_it(tmp_path) -> None:
    # five runs of one code whose every latency moved by these factors, one run disturbed
    speeds = (1.00, 1.02, 0.98, 1.01, 1.30)
    runs = [make_run(tmp_path, f"r{n}", seed=n, speed=speed, noise=0.01)
            for n, speed in enumerate(speeds)]
    spreads = spread.pair_spreads(runs)
    # by hand: log factors 0, .0198, -.0202, .00995, .262; median .00995; absolute deviations
    # .00995, .00985, .0302, 0, .252; their median .00995; x1.4826 x sqrt(2) = 2.1% (plus
    # what the samples' own 1% noise adds to each run's median)
    assert 0.012 < spreads["ours.start_to_ready_s"] < 0.035
    assert spreads["ours.start_to_ready_s_vs_process"] < 0.02  # the floor moved alike
    assert set(spreads) >= {"process.start_to_ready_s", "ours.teardown_s"}  # floors; tolerance
    path = tmp_path / "thresholds.toml"
    path.write_text(spread.thresholds_toml(spreads, [r.name for r in runs], 0.05))
    thresholds = Thresholds.load(path)
    assert thresholds.lookup("ours", "start_to_ready_s") <= 0.11  # not the disturbed run's 30%
    for base in runs[:4]:  # the undisturbed runs pass against each other in both forms
        for candidate in runs[:4]:
            if base != candidate:
                for normalized in (True, False):
                    result = compare_runs(base, candidate, thresholds, normalized=normalized)
                    assert result.exit_code == 0, result.regressions


def test_a_spread_needs_two_runs_of_a_kind() -> None:
    assert spread.robust_pair_sigma([0.0, 0.0, 0.0]) == 0.0
    # two values: the median absolute deviation is half their distance
    assert abs(spread.robust_pair_sigma([0.0, 0.1]) - 0.110) < 0.001


def test_suggested_threshold_rounds_up_with_a_floor() -> None:
    assert spread.suggested_threshold(0.0) == spread.FLOOR
    assert spread.suggested_threshold(0.07) == 0.21
    assert spread.suggested_threshold(0.0701) == 0.22
    assert spread.suggested_threshold(0.21, factor=2.0) == 0.42


def test_spread_across_machine_kinds_goes_into_its_own_table(tmp_path) -> None:
    runs = [make_run(tmp_path, "a1", seed=1, cpu_model="AMD EPYC"),
            make_run(tmp_path, "a2", seed=2, cpu_model="AMD EPYC"),
            make_run(tmp_path, "i1", seed=3, cpu_model="Intel Xeon",
                     shifts={("ours", "stop_s"): 1.4})]
    same = spread.pair_spreads(runs)
    across = spread.across_kind_spreads(runs, alpha=0.05)
    assert same["ours.stop_s_vs_process"] < 0.1 < 0.3 < across["ours.stop_s_vs_process"]
    path = tmp_path / "thresholds.toml"
    path.write_text(spread.thresholds_toml(same, [r.name for r in runs], 0.05, across))
    thresholds = Thresholds.load(path)
    assert thresholds.lookup("ours", "stop_s_vs_process") <= 0.2
    assert thresholds.for_kinds(False).lookup("ours", "stop_s_vs_process") >= 0.8
    for base in runs:
        for candidate in runs:
            if base != candidate:
                assert compare_runs(base, candidate, thresholds,
                                            normalized=True).exit_code == 0


def test_the_thresholds_command_writes_a_file_compare_reads(tmp_path, capsys) -> None:
    from harness.cli import main

    runs = [make_run(tmp_path, f"r{n}", seed=n, speed=speed, noise=0.01)
            for n, speed in enumerate((1.0, 1.03, 0.98))]
    output = tmp_path / "thresholds.toml"
    assert main(["thresholds", *(str(run) for run in runs), "--output", str(output)]) == 0
    thresholds = Thresholds.load(output)
    assert "ours.start_to_ready_s_vs_process" in thresholds.metrics
    assert "# Made by `cvbench thresholds` from 3 quick-suite runs:" in output.read_text()
    capsys.readouterr()
    for bad in (runs[:2], [*runs, tmp_path / "nowhere"]):
        assert main(["thresholds", *(str(run) for run in bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cvbench: error: ") and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as refused:  # the parser's own check: one line, exit 2
        main(["thresholds", *(str(run) for run in runs), "--alpha", "1.5"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "argument --alpha" in err and err.count("\n") == 1, err


def test_the_median_sampling_spread_of_a_two_point_distribution() -> None:
    import numpy as np

    # by hand: runs of (0, 0, 0.2), each centred on its median 0; a median of three draws
    # is 0.2 when two or three are, with odds 3 (1/3)^2 (2/3) + (1/3)^3 = 7/27, so its
    # deviation is 0.2 x sqrt(7/27 x 20/27) = 0.0877
    runs = [np.array([0.0, 0.0, 0.2]), np.array([1.0, 1.0, 1.2])]
    assert abs(spread.median_sampling_sigma(runs) - 0.0877) < 0.004
    # every sample alike: no sampling spread, whatever the runs' own levels
    assert spread.median_sampling_sigma([np.zeros(5), np.ones(5)]) == 0.0


def _stop_times_run(results_dir, run_id: str, stops) -> Path:
    """A run of the qemu floor with its cold stop times as given, and libvirt beside it
    (a run's ratios need a member of the family) at a steady 6 ms."""
    from harness.results import RunWriter, Sample

    writer = RunWriter.create(results_dir, run_id, {
        "suite": "quick", "scenarios": ["startup"],
        "backends": {"qemu": {"accel": "tcg"}, "libvirt": {"accel": "tcg"}},
        "host": {"hostname": "h", "cpus": 2, "kernel": "6.1.0", "cpu_model": "Test CPU"},
        "accel": {"accel": "tcg"}, "git_commit": run_id})
    writer.add([Sample(run_id=run_id, scenario="startup", kind="startup", backend=backend,
                       metric="stop_s", value=float(value), unit="s", accel="tcg",
                       network="none", guest_memory_mib=128, image_digest="sha256:" + "ab" * 32,
                       repetition=rep, variant="cold")
                for backend, times in (("qemu", stops), ("libvirt", [0.006] * len(stops)))
                for rep, value in enumerate(times)])
    writer.finish("complete")
    return writer.directory


def test_a_heavy_tail_the_run_medians_hide_sets_the_spread(tmp_path) -> None:
    """Five stop times a run, most near 6 ms and some slow: the runs' medians agree, so their
    median absolute deviation is near zero, but a median of five moves whenever three of
    them are slow, as a pair of runs in CI showed (+24%)."""
    fast, slow = 0.0060, 0.0300
    runs = [_stop_times_run(tmp_path, f"r{n}", stops) for n, stops in enumerate([
        (fast, fast, fast, slow, fast), (fast, slow, fast, fast, fast),
        (fast, fast, fast, fast, fast), (slow, fast, fast, fast, slow),
        (fast, fast, slow, fast, fast), (fast, fast, fast, fast, fast)])]
    assert spread._one_kind_spreads(runs)["qemu.cold.stop_s"] == 0.0  # every median 6 ms
    # by hand: 5 of 30 samples slow; a median of 5 is slow when 3 or more are, with odds
    # 0.0355 (binomial, p = 1/6), so the log median is 0 or ln 5 = 1.609: deviation
    # 1.609 x sqrt(0.0355 x 0.9645) = 0.298, and for a pair e^(0.298 x sqrt 2) - 1 = 0.52
    both = spread.pair_spreads(runs)
    assert 0.45 < both["qemu.cold.stop_s"] < 0.60, both
    # libvirt's own stop times never move, but its ratio's floor does
    assert both["libvirt.cold.stop_s"] == 0.0
    assert 0.45 < both["libvirt.cold.stop_s_vs_qemu"] < 0.60, both


def test_a_ratio_to_the_floor_adds_the_floors_sampling_spread() -> None:
    known = {"process.warm.start_to_ready_s": 0.0, "process.stop_s": 0.0}
    assert spread._floor_key("ours.warm.start_to_ready_s_vs_process", known) == \
        "process.warm.start_to_ready_s"
    assert spread._floor_key("ours.cold.stop_s_vs_process", known) == "process.stop_s"
    assert spread._floor_key("ours.cold.stop_s", known) is None
    assert spread._floor_key("libvirt.cold.stop_s_vs_qemu", known) is None  # floor unknown
