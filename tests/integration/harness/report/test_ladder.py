"""The isolation ladder for real: scenarios/ladder.toml, cut short (2 repetitions, 3 idle
instances), run through the runner on this host; every rung is its own series, cold and
warm and in memory, normalised to the process floor, and the report draws where the time
and the memory go."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from harness import normalize, report, runner, scenario
from harness.report import ladder

pytestmark = [pytest.mark.root]

REPO = Path(__file__).resolve().parents[4]


def short_suite(tmp_path: Path) -> scenario.Suite:
    """The shipped ladder, each scenario made short (its rungs and options unchanged)."""
    suite = scenario.load(REPO / "scenarios" / "ladder.toml")
    startup, memory = suite.scenarios
    startup = dataclasses.replace(startup, params=dataclasses.replace(
        startup.params, repetitions=2, warmup=1))
    memory = dataclasses.replace(memory, params=dataclasses.replace(
        memory.params, instances=3, passes=1, warmup=0, settle_s=0.0))
    return dataclasses.replace(suite, path=tmp_path / "ladder.toml", seed=24,
                               scenarios=(startup, memory))


@pytest.mark.timeout(900)
def test_every_rung_is_a_series_cold_warm_and_in_memory(state_dir, tmp_path) -> None:
    suite = short_suite(tmp_path)
    run_dir = runner.run_suite(suite, tmp_path / "results", quiet=True)
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "complete" and not metadata.get("failures")
    assert not metadata.get("cleanup_failures")  # six floor backends shared one cgroup parent
    assert metadata["backend_order"] == list(suite.backends)
    described = {name: facts.get("steps") for name, facts in metadata["backends"].items()}
    assert described["floor:bare"] == [] and described["floor:rootfs"] == [
        "namespaces", "rootfs"]
    assert len(described["floor"]) == 5  # every step

    samples = pd.read_csv(run_dir / "samples.csv")
    starts = samples[samples.metric == "start_to_ready_s"]
    counts = starts.groupby(["backend", "variant"]).size()
    for backend in suite.backends:
        for variant in ("cold", "warm"):
            assert counts.get((backend, variant)) == 2, (backend, variant)
    assert (starts.value > 0).all()
    memory = samples[samples.metric == "mem_host_delta_per_instance_bytes"]
    assert sorted(memory.backend) == sorted(suite.backends)  # one pass each
    items = samples[samples.metric.str.startswith("mem_item_")]
    assert set(items.backend) == set(suite.backends)

    # normalisation: every floor rung is a member of the container family, to process
    ratios = normalize.load_normalized(run_dir)
    floors = ratios[ratios.metric == "start_to_ready_s_vs_process"]
    assert set(floors.backend) == set(suite.backends) - {"process"}

    output = report.write_report([run_dir])
    rungs = ladder.rungs(metadata["backends"], suite.backends)
    assert [rung.backend for rung in rungs] == list(suite.backends)
    for name in ("ladder-startup-ladder", "ladder-memory-ladder"):
        assert (output / f"{name}.svg").stat().st_size > 1000, name
    summary = (output / "summary.md").read_text()
    for name in ("ladder-startup", "ladder-memory"):
        section = summary[summary.index(f"### The isolation ladder: {name}"):]
        rows = [line.split(" | ")[0].lstrip("| ") for line in section.splitlines()[6:16]]
        assert rows == list(suite.backends), name  # one row per rung, in the ladder's order
