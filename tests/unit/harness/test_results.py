"""Run directories: atomic writes, statuses, pandas loading in one call."""

from __future__ import annotations

import json

import pytest

from harness import results
from harness.results import RunWriter, Sample


def _sample(value: float, repetition: int = 0) -> Sample:
    return Sample(run_id="r", scenario="startup", kind="startup", backend="process",
                  metric="start_to_ready_s", value=value, unit="s", repetition=repetition)


def test_writer_lifecycle_and_pandas_load(tmp_path) -> None:
    writer = RunWriter.create(tmp_path, "r", {"suite": "t"})
    assert results.read_metadata(writer.directory)["status"] == "running"
    writer.add([_sample(0.001, i) for i in range(5)])
    writer.finish("complete")
    metadata = results.read_metadata(writer.directory)
    assert metadata["status"] == "complete" and metadata["schema_version"] == results.SCHEMA_VERSION
    frame = results.load_samples(writer.directory)
    assert list(frame.columns) == list(results.SAMPLE_COLUMNS)
    assert len(frame) == 5 and frame.value.sum() == pytest.approx(0.005)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch) -> None:
    writer = RunWriter.create(tmp_path, "r", {})
    writer.add([_sample(1.0)])
    writer.flush()
    before = (writer.directory / "samples.csv").read_text()

    def broken_fsync(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(results.os, "fsync", broken_fsync)
    writer.add([_sample(2.0)])
    with pytest.raises(OSError):
        writer.flush()
    assert (writer.directory / "samples.csv").read_text() == before
    assert not [p for p in writer.directory.iterdir() if p.name.startswith(".")]


def test_resolve_run_by_id_and_prefix(tmp_path) -> None:
    RunWriter.create(tmp_path, "20260101T000000-quick-1", {}).finish("complete")
    assert results.resolve_run("20260101T000000-quick-1", tmp_path).name.endswith("quick-1")
    assert results.resolve_run("20260101", tmp_path).name.endswith("quick-1")
    with pytest.raises(results.ResultsError):
        results.resolve_run("nope", tmp_path)


def test_list_and_load_all(tmp_path) -> None:
    for index in range(2):
        writer = RunWriter.create(tmp_path, f"run{index}", {"suite": "t"})
        writer.add([_sample(0.5)])
        writer.finish("complete")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.json").write_text("{not json")
    assert len(results.list_runs(tmp_path)) == 2
    frame = results.load_all(tmp_path)
    assert set(frame.run_id) == {"r"} and len(frame) == 2
    assert "status" in frame.columns
    json.loads((tmp_path / "run0" / "metadata.json").read_text())
