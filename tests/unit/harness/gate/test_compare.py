"""cvbench compare on synthetic runs with known shifts: both gates, dimensions, CLI, outputs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from synthetic_runs import make_run

from harness.cli import main
from harness.gate import render, verdicts
from harness.gate.compare import compare_runs
from harness.gate.errors import CompareError
from harness.gate.thresholds import Thresholds


@pytest.fixture
def results_dir(tmp_path):
    return tmp_path / "results"


@pytest.fixture
def base(results_dir):
    return make_run(results_dir, "base", seed=1)


def _rows(comparison, backend=None, metric=None, variant=None):
    return [row for row in comparison.rows
            if (backend is None or row.backend == backend)
            and (metric is None or row.metric == metric)
            and (variant is None or row.variant == variant)]


def _row(comparison, backend, metric, variant=None):
    (row,) = _rows(comparison, backend, metric, variant)
    return row


def test_direction_is_defined_once() -> None:
    assert verdicts.direction("start_to_ready_s") == verdicts.LOWER_IS_BETTER
    assert verdicts.direction("mem_pss_bytes") == verdicts.LOWER_IS_BETTER
    assert verdicts.direction("start_to_ready_s_vs_process") == verdicts.LOWER_IS_BETTER
    assert verdicts.direction("max_instances_alive") == verdicts.HIGHER_IS_BETTER
    assert verdicts.direction("max_instances_alive_vs_process") == verdicts.HIGHER_IS_BETTER
    assert verdicts.direction("instances_alive") is None
    assert verdicts.direction("ksm_pages_sharing") is None


def test_noise_alone_is_no_regression(results_dir, base) -> None:
    candidate = make_run(results_dir, "cand", seed=2)
    comparison = compare_runs(base, candidate)
    assert comparison.regressions == [] and comparison.exit_code == 0
    assert comparison.rows, "something was compared"
    # readings of the host's state (density curve points, counters) are not compared
    metrics = {row.metric for row in comparison.rows}
    assert not metrics & {"instances_alive", "host_mem_used_bytes", "host_mem_available_bytes",
                          "ksm_pages_sharing"}


def test_significant_and_large_shift_is_a_regression(results_dir, base) -> None:
    candidate = make_run(results_dir, "cand", seed=2, shifts={("ours", "start_to_ready_s"): 1.3})
    comparison = compare_runs(base, candidate)
    row = _row(comparison, "ours", "start_to_ready_s")
    assert row.verdict == verdicts.REGRESSION
    assert row.p_value < 0.001 and row.ratio == pytest.approx(1.3, rel=0.05)
    assert [(r.backend, r.metric) for r in comparison.regressions] == [
        ("ours", "start_to_ready_s")
    ]
    assert comparison.exit_code == 1


def test_density_launch_time_per_step_is_gated(results_dir, base) -> None:
    candidate = make_run(results_dir, "cand", seed=2, shifts={("crun", "launch_s"): 1.3})
    comparison = compare_runs(base, candidate)
    row = _row(comparison, "crun", "launch_s")
    assert (row.n_base, row.n_cand) == (10, 10)  # one value per ramp step
    assert row.verdict == verdicts.REGRESSION
    libvirt = _row(comparison, "libvirt", "launch_s")  # 2 steps: too few for the rank test
    assert libvirt.rule == verdicts.TOLERANCE and row.rule == verdicts.RANK
    assert libvirt.verdict == verdicts.WITHIN_TOLERANCE


def test_significant_but_small_shift_is_not_flagged(results_dir) -> None:
    base = make_run(results_dir, "base", seed=1, noise=0.01, repetitions=30)
    candidate = make_run(results_dir, "cand", seed=2, noise=0.01, repetitions=30,
                         shifts={("crun", "start_to_ready_s"): 1.05})
    row = _row(compare_runs(base, candidate), "crun", "start_to_ready_s")
    assert row.p_value < 0.05, "the shift is significant"
    assert row.verdict == verdicts.WITHIN_THRESHOLD and not row.regression


def test_large_but_not_significant_shift_is_not_flagged(results_dir) -> None:
    # 8 against 8 values (the rank rule), the candidate's spread wide: not significant
    base = make_run(results_dir, "base", seed=1, repetitions=8, noise=0.01)
    candidate = make_run(results_dir, "cand", seed=2, repetitions=8, noise=0.9,
                         shifts={("runc", "start_to_ready_s"): 1.3})
    row = _row(compare_runs(base, candidate), "runc", "start_to_ready_s")
    assert row.rule == verdicts.RANK and row.p_value >= 0.05
    assert row.verdict == verdicts.NOT_SIGNIFICANT and not row.regression


def test_few_values_are_judged_by_tolerance(results_dir) -> None:
    # 3 against 3 values: a rank test could never reach alpha 0.01 (p >= 0.1), so the
    # median is held to the threshold instead, and a doubling fails
    base = make_run(results_dir, "base", seed=1, repetitions=3)
    candidate = make_run(results_dir, "cand", seed=2, repetitions=3,
                         shifts={("runc", "start_to_ready_s"): 2.0})
    comparison = compare_runs(base, candidate, alpha=0.01)
    row = _row(comparison, "runc", "start_to_ready_s")
    assert row.rule == verdicts.TOLERANCE and math.isnan(row.p_value)
    assert row.verdict == verdicts.REGRESSION and comparison.exit_code == 1


def test_faster_is_an_improvement_not_a_regression(results_dir, base) -> None:
    candidate = make_run(results_dir, "cand", seed=2, shifts={"start_to_ready_s": 0.7})
    comparison = compare_runs(base, candidate)
    assert _row(comparison, "ours", "start_to_ready_s").verdict == verdicts.IMPROVEMENT
    assert comparison.exit_code == 0


def test_memory_regression_is_per_variant(results_dir, base) -> None:
    candidate = make_run(results_dir, "cand", seed=2,
                         shifts={("libvirt", "mem_vmm_overhead_bytes"): 1.5})
    comparison = compare_runs(base, candidate)
    rows = _rows(comparison, "libvirt", "mem_vmm_overhead_bytes")
    assert sorted(row.variant for row in rows) == ["ksm=off", "ksm=on"]
    # 3 instances per VM: judged by tolerance, and +50% is beyond it in both variants
    assert [row.verdict for row in rows] == [verdicts.REGRESSION] * 2
    assert [row.rule for row in rows] == [verdicts.TOLERANCE] * 2


def test_single_values_fail_beyond_their_tolerance(results_dir, base) -> None:
    candidate = make_run(results_dir, "cand", seed=2, shifts={"teardown_s": 3.0})
    comparison = compare_runs(base, candidate)
    row = _row(comparison, "ours", "teardown_s")
    assert row.rule == verdicts.TOLERANCE and row.verdict == verdicts.REGRESSION
    assert math.isnan(row.p_value) and row.ratio == pytest.approx(3.0, rel=0.1)
    alive = _row(comparison, "ours", "max_instances_alive")
    assert alive.verdict == verdicts.WITHIN_TOLERANCE  # the same count
    assert comparison.exit_code == 1


@pytest.mark.parametrize(
    ("metric", "ratio", "expected"),
    [
        ("max_instances_alive", 0.5, verdicts.REGRESSION),  # higher is better: fewer is worse
        ("max_instances_alive", 2.0, verdicts.IMPROVEMENT),
        ("max_instances_alive", 0.95, verdicts.WITHIN_THRESHOLD),
        ("start_to_ready_s", 1.2, verdicts.REGRESSION),
        ("start_to_ready_s", 0.5, verdicts.IMPROVEMENT),
        ("start_to_ready_s", math.nan, verdicts.NO_RATIO),
    ],
)
def test_verdict_follows_direction(metric, ratio, expected) -> None:
    assert verdicts.verdict(metric, 10, 10, ratio, 0.001, 0.10, 0.05) == expected


@pytest.mark.parametrize(
    ("metric", "ratio", "worse"),
    [
        ("start_to_ready_s", 1.3, 0.3),
        ("start_to_ready_s", 0.7, -0.3),
        ("mem_pss_bytes_vs_process", 2.0, 1.0),
        ("max_instances_alive", 0.5, 1.0),  # half as many: twice as bad
        ("max_instances_alive", 2.0, -0.5),
        ("max_instances_alive", 0.0, math.inf),
    ],
)
def test_worse_by_follows_direction(metric, ratio, worse) -> None:
    assert verdicts.worse_by(metric, ratio) == pytest.approx(worse)


def test_thresholds_file(tmp_path, results_dir, base) -> None:
    candidate = make_run(results_dir, "cand", seed=2, shifts={"start_to_ready_s": 1.3})
    loose = tmp_path / "loose.toml"
    loose.write_text('default = 0.5\n[metrics]\n"runc.start_to_ready_s" = 0.2\n'
                     "crun.start_to_ready_s = 0.25\n")  # unquoted dotted key: a nested table
    comparison = compare_runs(base, candidate, Thresholds.load(loose))
    flagged = {row.backend for row in comparison.regressions}
    assert flagged == {"runc", "crun"}
    assert _row(comparison, "ours", "start_to_ready_s").threshold == 0.5
    assert _row(comparison, "crun", "start_to_ready_s").threshold == 0.25


def test_threshold_lookup_order() -> None:
    thresholds = Thresholds(default=0.1, metrics={"start_to_ready_s": 0.2,
                                                  "ours.start_to_ready_s": 0.3,
                                                  "ours.warm.start_to_ready_s": 0.05})
    assert thresholds.lookup("ours", "start_to_ready_s", "cold") == 0.3
    assert thresholds.lookup("ours", "start_to_ready_s", "warm") == 0.05
    assert thresholds.lookup("ours", "start_to_ready_s_vs_process", "warm") == 0.05
    assert thresholds.lookup("crun", "start_to_ready_s", "warm") == 0.2
    assert thresholds.lookup("crun", "start_to_ready_s_vs_process") == 0.2
    assert Thresholds(metrics={"ours.stop_s": 0.4}).lookup("ours", "stop_s_vs_process") == 0.4
    assert thresholds.lookup("crun", "stop_s") == 0.1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default = ", "not valid TOML"),
        ("default = -0.1", "non-negative"),
        ('[metrics]\nstop_s = "10%"', "metrics.stop_s"),
        ("treshold = 0.1", "unknown key"),
        ("[across_kinds]\ndefault = 1\n[across_kinds.across_kinds]\ndefault = 2",
         "unknown key.*across_kinds.across_kinds"),
        ("across_kinds = 0.5", "'across_kinds' must be a table"),
        ("[across_kinds]\nmetrics = 0.5", "'across_kinds.metrics' must be a table"),
    ],
)
def test_bad_thresholds_file(tmp_path, text, message) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(CompareError, match=message):
        Thresholds.load(path)


def test_normalized_compare_across_machine_speeds(results_dir, base) -> None:
    slower_machine = make_run(results_dir, "slow", seed=2, speed=2.0, hostname="host-b")
    raw = compare_runs(base, slower_machine)
    assert len(raw.regressions) > 10, "absolute figures all look twice as slow"
    assert any("different hosts" in note for note in raw.notes)
    normalized = compare_runs(base, slower_machine, normalized=True)
    assert normalized.regressions == []
    assert all(row.metric.endswith("_vs_qemu" if row.backend == "libvirt" else "_vs_process")
               for row in normalized.rows)
    assert not _rows(normalized, backend="process") and not _rows(normalized, backend="qemu")

    slower_and_worse = make_run(results_dir, "worse", seed=3, speed=2.0,
                                shifts={("ours", "start_to_ready_s"): 1.3})
    normalized = compare_runs(base, slower_and_worse, normalized=True)
    assert [(r.backend, r.metric) for r in normalized.regressions] == [
        ("ours", "start_to_ready_s_vs_process")
    ]


def test_accel_mismatch_is_refused(results_dir, base) -> None:
    candidate = make_run(results_dir, "cand", seed=2, accel="kvm")
    with pytest.raises(CompareError, match="accel differs for startup/libvirt"):
        compare_runs(base, candidate)


def test_image_change_is_refused_unless_allowed(results_dir, base) -> None:
    candidate = make_run(results_dir, "cand", seed=2, image_digest="sha256:" + "cd" * 32)
    with pytest.raises(CompareError, match="image_digest differs.*--allow-image-change"):
        compare_runs(base, candidate)
    comparison = compare_runs(base, candidate, allow_image_change=True)
    assert comparison.exit_code == 0
    assert any("image_digest differs" in note and "allowed" in note for note in comparison.notes)


def test_a_backend_absent_from_the_candidate_fails_the_gate(results_dir, base) -> None:
    candidate = make_run(results_dir, "cand", seed=2, backends=("process", "ours"))
    comparison = compare_runs(base, candidate)
    missing = _rows(comparison, backend="libvirt")
    assert missing and {row.verdict for row in missing} == {verdicts.MISSING_IN_CANDIDATE}
    assert comparison.exit_code == 1 and not comparison.regressions
    # one line per scenario and backend, none for the backends the candidate has
    assert "backend startup/libvirt of the baseline is absent from the candidate" \
        in comparison.faults
    assert len(comparison.faults) == 3 * 4  # startup, density, memory x crun, runc, qemu, libvirt
    assert not [fault for fault in comparison.faults if "/ours" in fault or "/process" in fault]


def test_a_scenario_or_variant_absent_from_the_candidate_is_named_once(results_dir) -> None:
    base = make_run(results_dir, "base")
    candidate = make_run(results_dir, "cand", seed=2, kinds=("startup", "density"))
    comparison = compare_runs(base, candidate)
    assert comparison.faults == ["scenario memory of the baseline is absent from the candidate"]
    assert comparison.exit_code == 1
    # a variant: drop ours' warm rows from a copy of a real recorded run
    real = Path(__file__).parents[4] / "results" / "baseline" / "amd-epyc"
    frame = pd.read_csv(real / "samples.csv")
    assert ((frame.backend == "ours") & (frame.variant == "warm")).any()
    kept = frame[~((frame.backend == "ours") & (frame.variant == "warm"))]
    lacking = results_dir / "lacking"
    lacking.mkdir()
    kept.to_csv(lacking / "samples.csv", index=False)
    shutil.copy(real / "metadata.json", lacking / "metadata.json")
    comparison = compare_runs(real, lacking)
    assert [fault for fault in comparison.faults if "ours" in fault] == [
        f"variant {scenario}/ours [warm] of the baseline is absent from the candidate"
        for scenario in sorted(set(frame[(frame.backend == "ours")
                                         & (frame.variant == "warm")].scenario))]
    assert compare_runs(real, real).faults == []


def test_an_incomplete_candidate_or_a_recorded_failure_fails_the_gate(results_dir, base):
    candidate = make_run(results_dir, "cand", seed=2)
    assert compare_runs(base, candidate).exit_code == 0
    metadata = json.loads((candidate / "metadata.json").read_text())
    metadata["status"] = "incomplete"
    metadata["error"] = "interrupted"
    metadata["failures"] = [{"scenario": "startup", "backend": "crun",
                             "reason": "start failed: exit status 1"}]
    (candidate / "metadata.json").write_text(json.dumps(metadata))
    comparison = compare_runs(base, candidate)
    assert comparison.faults == [
        "the candidate run is incomplete (interrupted)",
        "the candidate recorded a failure: startup/crun: start failed: exit status 1"]
    assert comparison.exit_code == 1 and not comparison.regressions
    # the baseline's own status is a note, not a fault of the candidate
    assert compare_runs(candidate, base).faults == []


def test_nothing_in_common_is_refused(results_dir) -> None:
    base = make_run(results_dir, "base", kinds=("startup",))
    candidate = make_run(results_dir, "cand", kinds=("memory",))
    with pytest.raises(CompareError, match="no metric in common"):
        compare_runs(base, candidate)


def test_markdown_table(results_dir, base) -> None:
    candidate = make_run(results_dir, "cand", seed=2, shifts={("ours", "start_to_ready_s"): 1.3})
    markdown = render.to_markdown(compare_runs(base, candidate))
    lines = markdown.splitlines()
    assert lines[0].startswith("### cvbench compare: base → cand")
    header = next(line for line in lines if line.startswith("| scenario"))
    assert header.count("|") == len(render.HEADERS) + 1
    (regression,) = [line for line in lines if "**regression**" in line]
    assert "| ours |" in regression and "start_to_ready_s" in regression
    assert "| memory | libvirt | mem_pss_bytes [ksm=on] |" in markdown


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.0123, "s", "12.3 ms"),
        (2.5, "s", "2.5 s"),
        (1.5 * 1024 * 1024, "bytes", "1.5 MiB"),
        (1.25, "ratio", "1.25×"),
        (100, "count", "100 count"),
        (math.nan, "s", "-"),
    ],
)
def test_values_are_shown_in_readable_units(value, unit, text) -> None:
    assert render.fmt_value(value, unit) == text


def test_p_values_and_ratios_are_formatted() -> None:
    assert render.fmt_p(0.0001) == "1.00e-04" and render.fmt_p(0.25) == "0.250"
    assert render.fmt_p(math.nan) == "-" and render.fmt_ratio(math.nan) == "-"
    assert render.fmt_ratio(1.3) == "1.300 (+30.0%)"


def test_terminal_table(results_dir, base) -> None:
    from rich.console import Console

    candidate = make_run(results_dir, "cand", seed=2, shifts={("ours", "start_to_ready_s"): 1.3})
    comparison = compare_runs(base, candidate, normalized=True)
    console = Console(record=True, width=250)
    render.render(comparison, console)
    text = console.export_text()
    assert "cvbench compare: base → cand (ratios to the process floor)" in text
    (line,) = [line for line in text.splitlines() if "│ regression" in line]
    assert "ours" in line and "start_to_ready_s_vs_process" in line and "20/20" in line
    assert text.rstrip().endswith(render.summary(comparison))
    assert render.summary(comparison).startswith("1 regression(s), 0 improvement(s)")


# ---------------------------------------------------------------- through the CLI


def test_cli_exit_codes_and_outputs(tmp_path, results_dir, base, capsys, monkeypatch) -> None:
    make_run(results_dir, "same", seed=2)
    make_run(results_dir, "worse", seed=3, shifts={("crun", "start_to_ready_s"): 1.5})
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))

    assert main(["compare", "base", "same", "--results-dir", str(results_dir)]) == 0
    out = capsys.readouterr().out
    assert "0 regression(s)" in out and "[ksm=off]" in out  # rich markup is escaped

    markdown = tmp_path / "out" / "compare.md"
    code = main(["compare", str(base), str(results_dir / "worse"), "--markdown", str(markdown),
                 "--alpha", "0.01"])
    assert code == 1
    assert "regression" in capsys.readouterr().out
    assert "**regression**" in markdown.read_text()
    text = summary.read_text()
    assert text.startswith("earlier step\n") and text.count("### cvbench compare") == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--alpha", "1.5"], "alpha"),
        (["--thresholds", "/nonexistent/t.toml"], "cannot read thresholds"),
    ],
)
def test_cli_bad_options_exit_2(results_dir, base, capsys, extra, message) -> None:
    try:  # a bad --alpha is refused while parsing (SystemExit), a bad file by the command
        code = main(["compare", "base", "base", "--results-dir", str(results_dir), *extra])
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("cvbench: error:") and message in err


def test_cli_unlike_runs_exit_2(results_dir, base, capsys) -> None:
    make_run(results_dir, "kvm", seed=2, accel="kvm")
    assert main(["compare", "base", "kvm", "--results-dir", str(results_dir)]) == 2
    err = capsys.readouterr().err
    assert "refusing to compare unlike runs: accel differs" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_unknown_run_exit_2(results_dir, base, capsys) -> None:
    assert main(["compare", "base", "nope", "--results-dir", str(results_dir)]) == 2
    assert "nope" in capsys.readouterr().err


def test_cli_normalized_without_floor_exit_2(results_dir, capsys) -> None:
    make_run(results_dir, "a", backends=("ours", "crun"))
    make_run(results_dir, "b", backends=("ours", "crun"))
    args = ["compare", "a", "b", "--results-dir", str(results_dir)]
    assert main([*args, "--normalized"]) == 2
    assert "process backend" in capsys.readouterr().err
    assert main(args) == 0


def _gated(base, candidate):
    return compare_runs(base, candidate, normalized=True, alpha=0.01)


def test_each_family_is_gated_by_its_own_floor(results_dir, base) -> None:
    """A slower machine moves each family with its floor: every VM time ×3 (slower
    emulation) and every container time ×1.5 pass; libvirt alone ×1.5 or ours alone ×1.5
    (the code got slower) fail."""
    slower_host = make_run(results_dir, "slower-host", seed=2, speed=1.5, vm_speed=3.0,
                           hostname="host-b")
    assert _gated(base, slower_host).regressions == []

    slower_libvirt = make_run(results_dir, "slower-libvirt", seed=3,
                              shifts={("libvirt", "start_to_ready_s"): 1.5})
    assert [(r.backend, r.metric) for r in _gated(base, slower_libvirt).regressions] == [
        ("libvirt", "start_to_ready_s_vs_qemu")]

    slower_ours = make_run(results_dir, "slower-ours", seed=4, speed=1.5, vm_speed=3.0,
                           shifts={("ours", "start_to_ready_s"): 1.5})
    assert [(r.backend, r.metric) for r in _gated(base, slower_ours).regressions] == [
        ("ours", "start_to_ready_s_vs_process")]
