"""Baselines per machine kind (results/baseline/<kind>/) and the gate's choice among them."""

from __future__ import annotations

import pytest
from synthetic_runs import make_run

from harness import baseline, results
from harness.gate.compare import compare_runs
from harness.gate.errors import CompareError
from harness.gate.thresholds import Thresholds


def test_machine_kind_names() -> None:
    from harness.hostinfo import machine_kind

    assert machine_kind("AMD EPYC") == "amd-epyc"
    assert machine_kind("Intel(R) Xeon(R) Processor") == "intel-xeon"
    assert machine_kind("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz") == \
        "intel-xeon-platinum-8375c"
    assert machine_kind("") == "unknown"


def test_baselines_are_kept_per_machine_kind(tmp_path) -> None:
    root = tmp_path / "baseline"
    root.mkdir()
    (root / "thresholds.toml").write_text("default = 0.3\n")
    amd = make_run(tmp_path / "runs", "amd", cpu_model="AMD EPYC")
    intel = make_run(tmp_path / "runs", "intel", cpu_model="Intel(R) Xeon(R) Processor",
                     started_at="2026-11-28T10:00:00+00:00")
    assert baseline.set_baseline(amd, root) == root / "amd-epyc"
    assert baseline.set_baseline(intel, root) == root / "intel-xeon"
    assert set(baseline.baselines(root)) == {"amd-epyc", "intel-xeon"}
    assert (root / "thresholds.toml").read_text() == "default = 0.3\n"
    again = make_run(tmp_path / "runs", "amd2", cpu_model="AMD EPYC")
    baseline.set_baseline(again, root)  # replaces only its own kind
    assert results.read_metadata(root / "amd-epyc")["git_commit"] == "commit-amd2"
    assert results.read_metadata(root / "intel-xeon")["git_commit"] == "commit-intel"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_the_old_single_baseline_layout_moves_into_its_kind(tmp_path) -> None:
    old = make_run(tmp_path, "baseline", cpu_model="Intel(R) Xeon(R) Processor")
    assert baseline.baselines(old) == {"intel-xeon": old}
    baseline.set_baseline(make_run(tmp_path / "runs", "amd", cpu_model="AMD EPYC"), old)
    assert set(baseline.baselines(old)) == {"amd-epyc", "intel-xeon"}


def test_choice_prefers_the_candidates_kind_else_the_newest(tmp_path) -> None:
    root = tmp_path / "baseline"
    baseline.set_baseline(make_run(tmp_path / "runs", "a", cpu_model="AMD EPYC",
                                   started_at="2026-11-28T09:00:00+00:00"), root)
    baseline.set_baseline(make_run(tmp_path / "runs", "i", cpu_model="Intel Xeon",
                                   started_at="2026-11-28T11:00:00+00:00"), root)
    same = baseline.choose(root, "amd-epyc")
    assert same.same_kind and same.directory == root / "amd-epyc" and same.note("x") is None
    other = baseline.choose(root, "arm-neoverse")
    assert not other.same_kind and other.kind == "intel-xeon"
    assert "no baseline for machine kind 'arm-neoverse'" in other.note("arm-neoverse")
    with pytest.raises(results.ResultsError, match="no baseline"):
        baseline.choose(tmp_path / "empty", "amd-epyc")


def test_another_machine_kind_is_judged_at_the_thresholds_across_kinds(tmp_path) -> None:
    """ours ×1.4 on another CPU model is what kinds differ by, not a regression; on the same
    kind it is one."""
    root = tmp_path / "baseline"
    baseline.set_baseline(make_run(tmp_path / "runs", "amd", cpu_model="AMD EPYC"), root)
    thresholds = Thresholds(default=0.25, across_kinds=Thresholds(default=1.0))
    shift = {("ours", "start_to_ready_s"): 1.4}
    same_kind = make_run(tmp_path / "runs", "amd-slower", seed=5, shifts=shift,
                         cpu_model="AMD EPYC")
    other_kind = make_run(tmp_path / "runs", "intel", seed=5, shifts=shift,
                          cpu_model="Intel(R) Xeon(R) Processor")
    gated = compare_runs(root, same_kind, thresholds, 0.01, normalized=True)
    assert [(r.backend, r.metric) for r in gated.regressions] == [
        ("ours", "start_to_ready_s_vs_process")]
    across = compare_runs(root, other_kind, thresholds, 0.01, normalized=True)
    assert across.regressions == []
    assert any("no baseline for machine kind 'intel-xeon'" in note for note in across.notes)


def test_thresholds_file_with_an_across_kinds_table(tmp_path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('default = 0.25\n[metrics]\n"ours.stop_s" = 0.3\n'
                    '[across_kinds]\ndefault = 0.8\n[across_kinds.metrics]\n"ours.stop_s" = 1.2\n')
    thresholds = Thresholds.load(path)
    assert thresholds.lookup("ours", "stop_s_vs_process") == 0.3
    assert thresholds.for_kinds(False).lookup("ours", "stop_s_vs_process") == 1.2
    assert thresholds.for_kinds(False).lookup("crun", "stop_s_vs_process") == 0.8
    assert thresholds.for_kinds(True) is thresholds
    path.write_text("[across_kinds]\nbogus = 1\n")
    with pytest.raises(CompareError, match="across_kinds.bogus"):
        Thresholds.load(path)
