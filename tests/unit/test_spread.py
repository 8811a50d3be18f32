"""Thresholds from run-to-run spread: above every significant change between same-code runs."""

from __future__ import annotations

from synthetic_runs import make_run

from harness import compare, spread


def test_spread_finds_the_drift_and_thresholds_cover_it(tmp_path) -> None:
    runs = [make_run(tmp_path, "a", seed=1), make_run(tmp_path, "b", seed=2),
            make_run(tmp_path, "c", seed=3, shifts={("ours", "start_to_ready_s"): 1.3})]
    spreads = spread.worst_significant_changes(runs, alpha=0.05)
    assert spreads["ours.start_to_ready_s_vs_process"] > 0.2
    text = spread.thresholds_toml(spreads, [r.name for r in runs], 0.05)
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    thresholds = compare.Thresholds.load(path)
    assert thresholds.lookup("ours", "start_to_ready_s_vs_process") >= 0.4
    for base in runs:
        for candidate in runs:
            if base != candidate:
                result = compare.compare_runs(base, candidate, thresholds, normalized=True)
                assert result.exit_code == 0


def test_suggested_threshold_rounds_up_with_a_floor() -> None:
    assert spread.suggested_threshold(0.0) == spread.FLOOR
    assert spread.suggested_threshold(0.21) == 0.45
