"""Ratios against each family's in-run floor (containers: process, VMs: qemu):
normalized.csv next to samples.csv."""

from __future__ import annotations

import pandas as pd
import pytest
from synthetic_runs import START_S, make_run

from harness import normalize, results
from harness.results import RunWriter, Sample


def _medians(frame: pd.DataFrame) -> pd.Series:
    frame = frame.assign(variant=frame.variant.fillna(""))
    return frame.groupby(["scenario", "backend", "metric", "variant"]).value.median()


def test_write_normalized(tmp_path) -> None:
    run_dir = make_run(tmp_path, "r", seed=1)
    path = normalize.write_normalized(run_dir)
    assert path == run_dir / "normalized.csv"
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert list(frame.columns) == list(results.SAMPLE_COLUMNS)
    assert set(frame.unit) == {"ratio"}
    containers = frame[frame.backend.isin(["ours", "crun", "runc"])]
    assert containers.metric.str.endswith("_vs_process").all()
    assert frame[frame.backend == "libvirt"].metric.str.endswith("_vs_qemu").all()
    assert not {"process", "qemu"} & set(frame.backend)
    # readings of the host's state and metrics the floor lacks are left out
    metrics = set(frame.metric)
    for metric in ("instances_alive", "host_mem_used_bytes", "ksm_pages_sharing"):
        assert f"{metric}_vs_process" not in metrics
    assert "mem_vmm_overhead_bytes_vs_process" not in metrics
    assert {"start_to_ready_s_vs_process", "launch_s_vs_process", "teardown_s_vs_process",
            "mem_pss_bytes_vs_process", "mem_vmm_overhead_bytes_vs_qemu",
            "start_to_ready_s_vs_qemu"} <= metrics
    medians = _medians(frame)
    for backend, floor in (("ours", "process"), ("crun", "process"), ("runc", "process"),
                           ("libvirt", "qemu")):
        expected = START_S[backend] / START_S[floor]
        got = medians["startup", backend, f"start_to_ready_s_vs_{floor}", ""]
        assert got == pytest.approx(expected, rel=0.05)
    # the VM floor has both KSM variants, so each libvirt variant has its own
    assert set(frame[frame.backend == "libvirt"].variant.dropna()) == {"ksm=off", "ksm=on"}
    # dimensions are written as samples.csv writes them
    text = path.read_text()
    assert ",128," in text and ",128.0," not in text


def test_ratios_do_not_depend_on_machine_speed(tmp_path) -> None:
    fast = normalize.load_normalized(make_run(tmp_path, "fast", seed=1))
    slow = normalize.load_normalized(make_run(tmp_path, "slow", seed=1, speed=1.5,
                                              vm_speed=3.0))
    pd.testing.assert_series_equal(_medians(fast), _medians(slow), rtol=1e-9)
    raw_fast = results.load_samples(tmp_path / "fast")
    raw_slow = results.load_samples(tmp_path / "slow")
    assert raw_slow.value.sum() > raw_fast.value.sum()


def test_load_normalized_prefers_the_file(tmp_path) -> None:
    run_dir = make_run(tmp_path, "r", seed=1, kinds=("startup",))
    computed = normalize.load_normalized(run_dir)
    normalize.write_normalized(run_dir)
    stored = normalize.load_normalized(run_dir)
    assert len(stored) == len(computed) > 0
    assert stored.value.to_numpy() == pytest.approx(computed.value.to_numpy())
    (run_dir / "normalized.csv").write_text(",".join(results.SAMPLE_COLUMNS) + "\n")
    assert normalize.load_normalized(run_dir).empty


def test_floor_is_per_run_when_runs_are_loaded_together(tmp_path) -> None:
    make_run(tmp_path, "a", seed=1, kinds=("startup",), started_at="2026-11-27T10:00:00+00:00")
    make_run(tmp_path, "b", seed=2, kinds=("startup",), speed=4.0,
             started_at="2026-11-27T11:00:00+00:00")
    frame = normalize.normalize(results.load_all(tmp_path))
    by_run = frame[frame.metric == "start_to_ready_s_vs_process"].groupby(
        ["run_id", "backend"]).value.median()
    assert by_run["a", "ours"] == pytest.approx(by_run["b", "ours"], rel=0.05)


def _write(tmp_path, samples: list[Sample]):
    writer = RunWriter.create(tmp_path, "r", {})
    writer.add(samples)
    writer.finish("complete")
    return writer.directory


def _s(backend: str, metric: str, value: float, **dims) -> Sample:
    return Sample(run_id="r", scenario="s", kind="startup", backend=backend, metric=metric,
                  value=value, unit="s", **dims)


def test_zero_floor_and_missing_floor_are_skipped(tmp_path) -> None:
    run_dir = _write(tmp_path, [
        _s("process", "a_s", 0.0, repetition=0), _s("ours", "a_s", 1.0, repetition=0),
        _s("ours", "b_s", 1.0, repetition=0),
        _s("process", "c_s", 2.0, repetition=0), _s("ours", "c_s", 3.0, repetition=0),
    ])
    frame = normalize.load_normalized(run_dir)
    assert list(frame.metric) == ["c_s_vs_process"]
    assert frame.value.iloc[0] == pytest.approx(1.5)


def test_run_without_floor_gives_an_empty_file(tmp_path) -> None:
    run_dir = _write(tmp_path, [_s("ours", "a_s", 1.0, repetition=0)])
    path = normalize.write_normalized(run_dir)
    assert path.read_text().strip() == ",".join(results.SAMPLE_COLUMNS)


def test_run_without_samples(tmp_path) -> None:
    run_dir = _write(tmp_path, [])
    assert normalize.load_normalized(run_dir).empty
    normalize.write_normalized(run_dir)


def test_a_floor_without_the_variant_gives_its_plain_figure(tmp_path) -> None:
    """``process`` has no warm variant: a warm ``ours`` start is divided by its plain start."""
    run_dir = _write(tmp_path, [
        _s("process", "a_s", 2.0, repetition=0),
        _s("ours", "a_s", 3.0, repetition=0, variant="warm"),
        _s("ours", "a_s", 5.0, repetition=0, variant="cold"),
        _s("process", "a_s", 4.0, repetition=0, variant="cold"),
    ])
    frame = normalize.load_normalized(run_dir).set_index("variant")
    assert frame.loc["warm", "value"] == pytest.approx(1.5)
    assert frame.loc["cold", "value"] == pytest.approx(1.25)


def test_labelled_backends_are_members_of_their_family_with_their_own_ratios(tmp_path) -> None:
    run_dir = _write(tmp_path, [
        _s("process", "a_s", 2.0, variant="cold"), _s("process", "a_s", 4.0, variant="cold"),
        _s("floor:bare", "a_s", 6.0, variant="cold"), _s("floor", "a_s", 9.0, variant="cold"),
        _s("process:again", "a_s", 1.5, variant="cold"),
        _s("qemu", "a_s", 10.0, variant="cold"), _s("libvirt:acpi", "a_s", 25.0, variant="cold"),
    ])
    frame = normalize.load_normalized(run_dir)
    ratios = dict(zip(frame.backend, zip(frame.metric, frame.value, strict=True), strict=True))
    assert ratios == {"floor:bare": ("a_s_vs_process", pytest.approx(2.0)),  # 6 / median 3
                      "floor": ("a_s_vs_process", pytest.approx(3.0)),
                      "process:again": ("a_s_vs_process", pytest.approx(0.5)),  # a member
                      "libvirt:acpi": ("a_s_vs_qemu", pytest.approx(2.5))}
