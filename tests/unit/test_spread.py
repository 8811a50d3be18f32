"""Thresholds from run-to-run spread: above every significant change between same-code runs."""

from __future__ import annotations

from synthetic_runs import make_run

from harness import spread
from harness.gate.compare import compare_runs
from harness.gate.thresholds import Thresholds


def test_spread_finds_the_drift_and_thresholds_cover_it(tmp_path) -> None:
    runs = [make_run(tmp_path, "a", seed=1), make_run(tmp_path, "b", seed=2),
            make_run(tmp_path, "c", seed=3, shifts={("ours", "start_to_ready_s"): 1.3})]
    spreads = spread.worst_significant_changes(runs, alpha=0.05)
    assert spreads["ours.start_to_ready_s_vs_process"] > 0.2
    assert spreads["ours.start_to_ready_s"] > 0.2  # the absolute figure has its own key
    assert set(spreads) >= {"process.start_to_ready_s", "ours.teardown_s"}  # floors; tolerance
    text = spread.thresholds_toml(spreads, [r.name for r in runs], 0.05)
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    thresholds = Thresholds.load(path)
    assert thresholds.lookup("ours", "start_to_ready_s_vs_process") >= 0.4
    for base in runs:
        for candidate in runs:
            if base != candidate:
                for normalized in (True, False):
                    result = compare_runs(base, candidate, thresholds, normalized=normalized)
                    assert result.exit_code == 0


def test_suggested_threshold_rounds_up_with_a_floor() -> None:
    assert spread.suggested_threshold(0.0) == spread.FLOOR
    assert spread.suggested_threshold(0.21) == 0.42
    assert spread.suggested_threshold(0.2101) == 0.43


def test_spread_across_machine_kinds_goes_into_its_own_table(tmp_path) -> None:
    runs = [make_run(tmp_path, "a1", seed=1, cpu_model="AMD EPYC"),
            make_run(tmp_path, "a2", seed=2, cpu_model="AMD EPYC"),
            make_run(tmp_path, "i1", seed=3, cpu_model="Intel Xeon",
                     shifts={("ours", "stop_s"): 1.4})]
    same = spread.worst_significant_changes(runs, alpha=0.05)
    across = spread.worst_significant_changes(runs, alpha=0.05, across_kinds=True)
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
