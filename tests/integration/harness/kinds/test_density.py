"""The density kind end to end through the harness API (not the CLI): `process` and `ours`
ramp twice each to 20 in an interleaved order (A B B A), every sample tagged with its ramp
and turn, each ramp's end in the metadata, and the report's table at matched counts."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness import report, runner, scenario

pytestmark = [pytest.mark.root]

SUITE = """
[suite]
name = "ramps"
backends = ["process", "ours"]
seed = 3

[[scenario]]
kind = "density"
name = "ramps"
max_instances = 20
batch_size = 5
min_mem_available_mib = 0
time_limit_s = 120
ramps = 2
"""


@pytest.mark.timeout(300)
def test_two_backends_ramp_twice_interleaved(state_dir, tmp_path) -> None:
    run_dir = runner.run_suite(scenario.loads(SUITE, tmp_path / "ramps.toml"),
                               tmp_path / "results", quiet=True)
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "complete" and not metadata.get("failures")
    samples = pd.read_csv(run_dir / "samples.csv")
    assert set(samples.kind) == {"density"}
    assert samples.repetition.notna().all() and samples.position.notna().all()

    # four turns, A B B A: positions 0-3 in the order the samples were recorded
    turns = samples[["position", "backend", "repetition"]].drop_duplicates()
    assert turns.position.tolist() == [0, 1, 2, 3]
    first, second = turns.backend.iloc[0], turns.backend.iloc[1]
    assert {first, second} == {"process", "ours"}
    assert turns.backend.tolist() == [first, second, second, first]
    assert turns.repetition.tolist() == [0, 0, 1, 1]

    for (backend, ramp), ramp_samples in samples.groupby(["backend", "repetition"]):
        alive = ramp_samples[ramp_samples.metric == "instances_alive"]
        assert alive.value.tolist() == [5, 10, 15, 20], (backend, ramp)
        assert alive.step.tolist() == [1, 2, 3, 4]
        assert (ramp_samples[ramp_samples.metric == "launch_s"].value > 0).all()
        assert ramp_samples[ramp_samples.metric == "max_instances_alive"].value.tolist() == [20]
        teardowns = ramp_samples[ramp_samples.metric == "teardown_s"]
        assert sorted(teardowns.instance.astype(int)) == list(range(1, 21))
        assert ramp_samples.position.nunique() == 1

    ramps = metadata["density"]["ramps"]
    assert set(ramps) == {"process", "ours"}
    for backend, entries in ramps.items():
        positions = [0, 3] if backend == first else [1, 2]
        assert [(e["ramp"], e["position"], e["turns"], e["stopped_by"], e["instances"])
                for e in entries] == [(0, positions[0], 4, "max_instances", 20),
                                      (1, positions[1], 4, "max_instances", 20)]
        assert all("at_live" not in e for e in entries)  # 1,000 was never reached

    output = report.write_report([run_dir])
    summary = (output / "summary.md").read_text()
    assert "### Density at matched live counts" in summary
    lines = summary.splitlines()
    header = lines.index("#### ramps: containers") + 2
    assert lines[header] == "| ramp | live | process | ours |"
    assert [line.split(" | ")[:2] for line in lines[header + 2:header + 6]] == [
        ["| 1st", "20"], ["| 1st", "ended"], ["| 2nd", "20"], ["| 2nd", "ended"]]
    assert not (state_dir / "containers").is_dir() or not any(
        (state_dir / "containers").iterdir())
