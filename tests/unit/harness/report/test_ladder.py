"""The isolation ladder: its rungs from a run's backend descriptions, each step's increment
on a small hand-made frame (expected values worked out by hand), the chart and the table;
and scenarios/ladder.toml naming the rungs in order."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from harness import scenario
from harness.backends.floor import plan as floor_plan
from harness.report import ladder

REPO = Path(__file__).resolve().parents[4]
RUN = "20261206T000000-ladder-1"
DESCRIPTIONS = {  # as metadata["backends"] holds them: the floor backends say their steps
    "process": {}, "ours": {}, "qemu": {"accel": "tcg"},
    "floor:bare": {"steps": []},
    "floor:ns": {"steps": ["namespaces"]},
    "floor": {"steps": ["namespaces", "rootfs"]},
}
# start → READY cold, seconds; medians by hand: process 2 ms, floor:bare 4 ms, floor:ns 5 ms,
# floor 4.5 ms, ours 12 ms
COLD = {"process": (0.001, 0.002, 0.003), "floor:bare": (0.003, 0.004, 0.005),
        "floor:ns": (0.004, 0.005, 0.009), "floor": (0.0045, 0.0045, 0.0045),
        "ours": (0.010, 0.012, 0.020), "qemu": (2.0, 2.1, 2.2)}
# warm: process 1 ms, floor:bare 0.5 ms, floor:ns 0.75 ms, floor 1 ms; ours has no warm start
WARM = {"process": (0.001,), "floor:bare": (0.0005,), "floor:ns": (0.0005, 0.001),
        "floor": (0.001, 0.001, 0.001)}
# in the order the suite listed them, shuffled: the rungs' order comes from the steps
BACKENDS = ("ours", "floor", "process", "floor:ns", "qemu", "floor:bare")


def frame(scenario_name: str = "ladder-startup", run: str = RUN) -> pd.DataFrame:
    rows = [{"run_id": run, "scenario": scenario_name, "kind": "startup", "backend": backend,
             "variant": variant, "metric": "start_to_ready_s", "value": value, "unit": "s"}
            for variant, table in (("cold", COLD), ("warm", WARM))
            for backend, values in table.items() for value in values]
    return pd.DataFrame(rows)


def test_rungs_go_from_the_process_floor_up_the_floors_steps_then_the_runtimes() -> None:
    rungs = ladder.rungs(DESCRIPTIONS, BACKENDS)
    assert [(r.backend, r.over, r.step) for r in rungs] == [
        ("process", None, "process (fork/exec)"),
        ("floor:bare", "process", "+ the floor launcher (no step)"),
        ("floor:ns", "floor:bare", "+ namespaces"),
        ("floor", "floor:ns", "+ rootfs"),
        ("ours", "floor", "ours over floor"),  # a VM (qemu) is no rung
    ]


def test_no_ladder_without_two_floors_of_different_steps() -> None:
    assert ladder.rungs(DESCRIPTIONS, ("process", "floor", "ours")) == []
    same = {**DESCRIPTIONS, "floor:ns": {"steps": ["namespaces", "rootfs"]}}
    assert ladder.rungs(same, ("process", "floor", "floor:ns", "ours")) == []
    assert ladder.rungs({"process": {}, "ours": {}}, ("process", "ours")) == []


def test_without_the_process_floor_the_fewest_steps_are_the_bottom() -> None:
    rungs = ladder.rungs(DESCRIPTIONS, ("floor", "floor:ns"))
    assert [(r.backend, r.over, r.step) for r in rungs] == [
        ("floor:ns", None, "floor:ns (namespaces)"), ("floor", "floor:ns", "+ rootfs")]


def test_each_steps_increment_is_its_median_less_the_rung_below() -> None:
    rungs = ladder.rungs(DESCRIPTIONS, BACKENDS)
    cold = ladder.steps_table(frame(), rungs, "start_to_ready_s", "cold")
    assert list(cold.index) == ["process", "floor:bare", "floor:ns", "floor", "ours"]
    expected_ms = {"process": 2.0, "floor:bare": 2.0, "floor:ns": 1.0, "floor": -0.5,
                   "ours": 7.5}
    for backend, increment in expected_ms.items():
        assert cold.loc[backend, "increment"] * 1e3 == pytest.approx(increment)
    assert cold.loc["ours", "median"] == pytest.approx(0.012)
    # p95 by linear interpolation: 1, 2, 3 ms -> 2 + 0.9 * (3 - 2) = 2.9 ms
    assert cold.loc["process", "p95"] == pytest.approx(0.0029)
    assert cold.loc["floor:ns", "n"] == 3
    warm = ladder.steps_table(frame(), rungs, "start_to_ready_s", "warm")
    assert warm.loc["floor:bare", "increment"] == pytest.approx(-0.0005)
    assert warm.loc["floor:ns", "increment"] == pytest.approx(0.00025)
    assert warm.loc["floor", "increment"] == pytest.approx(0.00025)
    assert warm.loc["ours", "n"] == 0 and math.isnan(warm.loc["ours", "increment"])


def test_a_bar_stacks_the_increments_of_its_way_up_to_its_median() -> None:
    rungs = ladder.rungs(DESCRIPTIONS, BACKENDS)
    table = ladder.steps_table(frame(), rungs, "start_to_ready_s", "cold")
    bars = ladder.segments(table, rungs)
    ours = [(step, value * 1e3) for step, value in bars["ours"]]
    assert [step for step, _ in ours] == ["process (fork/exec)",
                                          "+ the floor launcher (no step)", "+ namespaces",
                                          "+ rootfs", "ours over floor"]
    assert [value for _, value in ours] == pytest.approx([2.0, 2.0, 1.0, -0.5, 7.5])
    assert sum(value for _, value in ours) == pytest.approx(12.0)
    assert [step for step, _ in bars["floor:ns"]] == [
        "process (fork/exec)", "+ the floor launcher (no step)", "+ namespaces"]
    assert sum(value for _, value in bars["floor:ns"]) == pytest.approx(0.005)


def test_the_chart_and_table_of_a_run_with_rungs(tmp_path) -> None:
    samples = pd.concat([frame(), frame("other", run="another-run")], ignore_index=True)
    metadata = {RUN: {"backends": DESCRIPTIONS}, "another-run": {"backends": {}}}
    drawn = ladder.charts(samples, metadata, tmp_path)
    # several runs: the run's id in the name; the run without rungs draws nothing
    assert sorted(path.name for path in drawn) == [f"ladder-startup-ladder-{RUN}.png",
                                                   f"ladder-startup-ladder-{RUN}.svg"]
    assert all(path.stat().st_size > 1000 for path in drawn)
    svg = (tmp_path / f"ladder-startup-ladder-{RUN}.svg").read_text()
    assert "start → READY, cold, ms" in svg and "start → READY, warm, ms" in svg
    assert "+ the floor launcher (no step)" in svg and "ours over floor" in svg
    assert ladder.captions(drawn)[f"ladder-startup-ladder-{RUN}"].startswith(
        "ladder-startup: where the time")
    lines = ladder.markdown(samples, metadata)
    assert lines[0] == f"### The isolation ladder: ladder-startup (`{RUN}`)"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ")}
    assert rows["floor"] == ("| floor | + rootfs | 4.50 ms, 4.50 ms | −0.500 ms | "
                             "1.00 ms, 1.00 ms | 0.250 ms |")
    assert rows["ours"] == "| ours | ours over floor | 12.0 ms, 19.2 ms | 7.50 ms | -, - | - |"


def test_memory_per_rung_and_each_steps_kernel_items(tmp_path) -> None:
    # KiB per instance, one pass each: MemAvailable delta, and two items
    delta = {"process": 200, "floor:bare": 210, "floor:ns": 290, "floor": 300, "ours": 420}
    netns = {"process": 0, "floor:bare": 0, "floor:ns": 12, "floor": 12, "ours": 13}
    tasks = {"process": 40, "floor:bare": 44, "floor:ns": 44, "floor": 46, "ours": 50}
    rows = [{"run_id": RUN, "scenario": "ladder-memory", "kind": "memory", "backend": backend,
             "variant": "ksm=off", "metric": metric, "value": value * 1024, "unit": "bytes"}
            for metric, table in (("mem_host_delta_per_instance_bytes", delta),
                                  ("mem_item_slab_netns_bytes", netns),
                                  ("mem_item_slab_tasks_bytes", tasks))
            for backend, value in table.items()]
    samples = pd.DataFrame(rows)
    metadata = {RUN: {"backends": DESCRIPTIONS}}
    drawn = ladder.charts(samples, metadata, tmp_path)
    assert [path.name for path in drawn] == ["ladder-memory-ladder.png",
                                             "ladder-memory-ladder.svg"]
    svg = drawn[1].read_text()
    assert "host MemAvailable delta / K, KiB" in svg and "start → READY" not in svg
    lines = ladder.markdown(samples, metadata)
    table = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ")
             and "KiB" in line}
    assert table["floor:ns"] == "| floor:ns | + namespaces | 290 KiB, 290 KiB | 80.0 KiB |"
    assert table["ours"] == "| ours | ours over floor | 420 KiB, 420 KiB | 120 KiB |"
    header = next(line for line in lines if line.startswith("| rung | `"))
    assert header == "| rung | `slab_netns` | `slab_tasks` |"  # in memory_items' order
    items = {line.split(" | ")[0].lstrip("| "): line for line in lines[lines.index(header):]
             if line.startswith("| ") and not line.startswith("| rung")}
    assert items["process"] == "| process | 0 | 40.0 |"
    assert items["floor:bare"] == "| floor:bare | 0 | 4.00 |"
    assert items["floor:ns"] == "| floor:ns | 12.0 | 0 |"
    assert items["ours"] == "| ours | 1.00 | 4.00 |"


def test_the_ladder_scenario_names_the_rungs_in_order() -> None:
    suite = scenario.load(REPO / "scenarios" / "ladder.toml")
    assert suite.backends == ("process", "floor:bare", "floor:namespaces", "floor:rootfs",
                              "floor:cgroups", "floor:caps", "floor", "ours", "crun", "runc")
    assert [s.kind for s in suite.scenarios] == ["startup", "memory"]
    assert suite.scenarios[0].params.variants == ("cold", "warm")
    steps = {name: suite.options_for(name)["steps"] for name in suite.backends
             if name.startswith("floor")}
    # each floor rung adds the next step, in the launcher's order, up to every step
    assert [tuple(s) for s in steps.values()] == [
        floor_plan.STEPS[:count] for count in range(len(floor_plan.STEPS) + 1)]
    descriptions = {name: {"steps": steps.get(name)} if name in steps else {}
                    for name in suite.backends}
    rungs = ladder.rungs(descriptions, suite.backends)
    assert [rung.backend for rung in rungs] == list(suite.backends)
    assert [rung.step for rung in rungs][2:7] == [
        "+ namespaces", "+ rootfs", "+ cgroups", "+ caps", "+ seccomp"]
