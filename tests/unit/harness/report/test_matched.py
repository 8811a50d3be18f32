"""Density ramps compared at matched live counts, and the headline cut to the common range,
on a recorded-like run: every expected figure below is worked out by hand from the recipe of
:func:`_scale_run`, not by the code under test."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import report, results
from harness.report import facts, headline, matched
from harness.results import RunWriter, Sample

MIB = 1024 * 1024
BATCH = 250
BASE_MS = {"process": 0.1, "ours": 1.0, "crun": 3.0}  # launch ms of an odd step below 6,000
MIB_EACH = {"process": 0.25, "ours": 1.5, "crun": 1.25}  # memory per instance up to 6,000
TOPS = {("process", 0): 10_000, ("ours", 0): 10_000, ("crun", 0): 6_000,
        ("process", 1): 10_000, ("ours", 1): 10_000, ("crun", 1): 10_000}
# the interleaved order: process ours crun | crun ours process, then the VMs' own ramps
POSITIONS = {("process", 0): 0, ("ours", 0): 1, ("crun", 0): 2, ("crun", 1): 3,
             ("ours", 1): 4, ("process", 1): 5}


def _launch_s(backend: str, step: int, alive: int) -> float:
    """Even steps take twice as long as odd ones; past 6,000 alive, ten times more."""
    ms = BASE_MS[backend] * (2 if step % 2 == 0 else 1) * (10 if alive > 6_000 else 1)
    return ms / 1000


def _used(backend: str, alive: int) -> float:
    """m MiB per instance up to 6,000 alive, 3 m per instance past it."""
    each = MIB_EACH[backend] * MIB
    return each * min(alive, 6_000) + 3 * each * max(alive - 6_000, 0)


def _scale_run(results_dir: Path) -> Path:
    """A scale run as the density kind records it: process, ours and crun ramp twice in
    batches of 250 to 10,000, but crun's first ramp stops at the memory floor at 6,000; qemu
    and libvirt ramp twice to 8 in batches of 4 (their own family). Teardown k of a ramp that
    reached N took (N - k + 1) µs x the backend's launch base."""
    writer = RunWriter.create(results_dir, "scale-run", {"suite": "scale"})
    summary: dict[str, list[dict]] = {}

    def sample(backend: str, metric: str, value: float, unit: str, ramp: int, position: int,
               **dims) -> Sample:
        return Sample(run_id="scale-run", scenario="scale", kind="density", backend=backend,
                      metric=metric, value=value, unit=unit, accel="none", network="none",
                      repetition=ramp, position=position, **dims)

    for (backend, ramp), top in TOPS.items():
        position = POSITIONS[(backend, ramp)]
        rows = []
        for step, alive in enumerate(range(BATCH, top + 1, BATCH), start=1):
            rows += [sample(backend, "instances_alive", alive, "count", ramp, position,
                            step=step),
                     sample(backend, "launch_s", _launch_s(backend, step, alive), "s", ramp,
                            position, step=step),
                     sample(backend, "host_mem_used_bytes", _used(backend, alive), "bytes",
                            ramp, position, step=step)]
        rows += [sample(backend, "teardown_s", (top - k + 1) * BASE_MS[backend] * 1e-6, "s",
                        ramp, position, instance=str(k)) for k in range(1, top + 1)]
        rows.append(sample(backend, "max_instances_alive", top, "count", ramp, position))
        writer.add(rows)
        reason = "memory_floor" if top < 10_000 else "max_instances"
        summary.setdefault(backend, []).append(
            {"ramp": ramp, "position": position, "turns": 6, "stopped_by": reason,
             "instances": top})
    for backend in ("qemu", "libvirt"):
        for ramp in (0, 1):
            position = {("qemu", 0): 6, ("libvirt", 0): 7, ("libvirt", 1): 8,
                        ("qemu", 1): 9}[(backend, ramp)]
            for step, alive in enumerate((4, 8), start=1):
                writer.add([
                    sample(backend, "instances_alive", alive, "count", ramp, position,
                           step=step),
                    sample(backend, "launch_s", 2.0, "s", ramp, position, step=step),
                    sample(backend, "host_mem_used_bytes", alive * 130 * MIB, "bytes", ramp,
                           position, step=step)])
            writer.add([sample(backend, "max_instances_alive", 8, "count", ramp, position)])
            summary.setdefault(backend, []).append(
                {"ramp": ramp, "position": position, "stopped_by": "max_instances",
                 "instances": 8})
    writer.metadata["density"] = {"scale": summary}
    writer.finish("complete")
    return writer.directory


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return _scale_run(tmp_path_factory.mktemp("matched") / "results")


@pytest.fixture(scope="module")
def found(run_dir) -> list[matched.Table]:
    return matched.tables(report.load([run_dir]), [results.read_metadata(run_dir)])


def test_one_table_per_family_and_ramp_at_the_levels_reached(found) -> None:
    assert [(t.family, t.ramp, list(t.ramps), t.levels) for t in found] == [
        ("container", 0, ["process", "ours", "crun"], (1_000, 5_000, 6_000, 10_000)),
        ("container", 1, ["process", "ours", "crun"], (1_000, 5_000, 10_000)),
        ("vm", 0, ["qemu", "libvirt"], (8,)),
        ("vm", 1, ["qemu", "libvirt"], (8,)),
    ]
    assert [t.common for t in found] == [6_000, 10_000, 8, 8]


@pytest.mark.parametrize(("ramp", "level", "expected"), [
    # 1,000: the batch 751-1,000 (step 4, even): twice the base
    (0, 1_000, ["200 µs · 0.250 MiB", "2.00 ms · 1.50 MiB", "6.00 ms · 1.25 MiB"]),
    # 5,000: steps 19 and 20 (4,501-5,000): 1x and 2x, median 1.5x
    (0, 5_000, ["150 µs · 0.250 MiB", "1.50 ms · 1.50 MiB", "4.50 ms · 1.25 MiB"]),
    # 6,000: steps 22, 23 and 24 (5,251-6,000 overlap 5,401-6,000): 2x, 1x, 2x
    (0, 6_000, ["200 µs · 0.250 MiB", "2.00 ms · 1.50 MiB", "6.00 ms · 1.25 MiB"]),
    # 10,000: steps 37-40, ten times (1x 2x 1x 2x): 15x; memory (6,000 m + 4,000 x 3 m) / 10,000
    (0, 10_000, ["1.50 ms · 0.450 MiB", "15.0 ms · 2.70 MiB",
                 "stopped by memory floor at 6,000"]),
    (1, 10_000, ["1.50 ms · 0.450 MiB", "15.0 ms · 2.70 MiB", "45.0 ms · 2.25 MiB"]),
])
def test_cells_at_matched_counts(found, ramp, level, expected) -> None:
    (table,) = [t for t in found if t.family == "container" and t.ramp == ramp]
    assert [matched.cell(table.ramps[b], level) for b in table.ramps] == expected


def test_markdown_rows_and_how_each_ramp_ended(found) -> None:
    lines = matched.markdown(found)
    start = lines.index("#### scale: containers")
    assert lines[start + 2:start + 13] == [
        "| ramp | live | process | ours | crun |",
        "|---|---:|---:|---:|---:|",
        "| 1st | 1,000 | 200 µs · 0.250 MiB | 2.00 ms · 1.50 MiB | 6.00 ms · 1.25 MiB |",
        "| 1st | 5,000 | 150 µs · 0.250 MiB | 1.50 ms · 1.50 MiB | 4.50 ms · 1.25 MiB |",
        "| 1st | 6,000 | 200 µs · 0.250 MiB | 2.00 ms · 1.50 MiB | 6.00 ms · 1.25 MiB |",
        "| 1st | 10,000 | 1.50 ms · 0.450 MiB | 15.0 ms · 2.70 MiB | stopped by memory floor "
        "at 6,000 |",
        "| 1st | ended | max_instances at 10,000 (turn 1) | max_instances at 10,000 (turn 2) "
        "| memory_floor at 6,000 (turn 3) |",
        "| 2nd | 1,000 | 200 µs · 0.250 MiB | 2.00 ms · 1.50 MiB | 6.00 ms · 1.25 MiB |",
        "| 2nd | 5,000 | 150 µs · 0.250 MiB | 1.50 ms · 1.50 MiB | 4.50 ms · 1.25 MiB |",
        "| 2nd | 10,000 | 1.50 ms · 0.450 MiB | 15.0 ms · 2.70 MiB | 45.0 ms · 2.25 MiB |",
        "| 2nd | ended | max_instances at 10,000 (turn 6) | max_instances at 10,000 (turn 5) "
        "| max_instances at 10,000 (turn 4) |",
    ]
    vms = lines.index("#### scale: VMs")
    assert lines[vms + 4] == "| 1st | 8 | 2.00 s · 130 MiB | 2.00 s · 130 MiB |"


def test_levels() -> None:
    assert matched.levels([10_000, 6_000, 10_000]) == (1_000, 5_000, 6_000, 10_000)
    assert matched.levels([100, 100]) == (100,)
    assert matched.levels([5_000, 5_000]) == (1_000, 5_000)
    assert matched.levels([1_200, 0]) == (1_000,)  # a ramp that reached none: levels alone
    assert matched.levels([]) == ()


def test_the_headline_compares_one_range(run_dir) -> None:
    """Common range: 6,000, crun's first ramp (the VMs' 8 is another family's)."""
    tables = headline.tables(report.load([run_dir]))
    (containers,) = [t for t in tables if t.family == "container"]
    rows = {(row.measure.metric, row.backend): row for row in containers.rows}
    # launch: steps 1-24 of each ramp, 12 at 1x and 12 at 2x: median 1.5x, n 48 (all
    # steps: 40 per ramp, the median 2x)
    assert rows[("launch_s", "ours")].n == 48 and rows[("launch_s", "crun")].n == 48
    assert rows[("launch_s", "ours")].median == pytest.approx(0.0015)
    assert rows[("launch_s", "crun")].median == pytest.approx(0.0045)
    assert rows[("launch_s", "ours")].to_floor.value == pytest.approx(10.0)
    # memory: the slope of m MiB per instance up to 6,000, one value per ramp
    assert rows[("host_mem_per_instance_bytes", "ours")].n == 2
    assert rows[("host_mem_per_instance_bytes", "ours")].median == pytest.approx(1.5 * MIB)
    assert rows[("host_mem_per_instance_bytes", "crun")].median == pytest.approx(1.25 * MIB)
    # teardown: the stops made with 1 .. 6,000 alive, in each ramp: median 3,000.5 x base µs
    assert rows[("teardown_s", "ours")].n == 12_000
    assert rows[("teardown_s", "ours")].median == pytest.approx(3000.5e-6)
    assert rows[("teardown_s", "crun")].median == pytest.approx(3 * 3000.5e-6)
    assert rows[("max_instances_alive", "crun")].median == 8_000  # (6,000 + 10,000) / 2
    notes = {row.measure.metric: row.measure.note for row in containers.rows}
    assert "up to 6,000 live" in notes["launch_s"]
    assert "up to 6,000 alive" in notes["teardown_s"]
    (vms,) = [t for t in tables if t.family == "vm"]
    assert {row.measure.note for row in vms.rows if row.measure.metric == "launch_s"} == {
        matched.RANGED["launch_s"].format(span="8")}


def test_the_report_shows_the_table_and_the_stopped_ramp(run_dir, tmp_path) -> None:
    output = report.write_report([run_dir], tmp_path / "out")
    summary = (output / "summary.md").read_text()
    headline_part = summary[summary.index("## Headline"):summary.index("## Methodology")]
    assert "### Density at matched live counts" in headline_part
    assert "| 1st | 6,000 | 200 µs · 0.250 MiB |" in headline_part
    assert "- scale/crun: ramp 1 stopped by memory_floor at 6000 instances" in headline_part
    page = (output / "index.html").read_text()
    section = page[page.index('<section id="headline">'):page.index('<section id="charts">')]
    assert "Density at matched live counts" in section and "stopped by memory floor" in section


def test_notes_read_an_older_run_with_one_ramp_per_backend() -> None:
    metadata = {"density": {"density": {"crun": {"stopped_by": "time_limit", "instances": 812},
                                        "ours": {"stopped_by": "max_instances"}}}}
    assert facts.notes({**metadata, "status": "complete"}) == [
        "density/crun: ramp stopped by time_limit at 812 instances"]


def test_how_a_ramp_ended_names_its_turn_and_the_hosts_uptime() -> None:
    ramp = matched.Ramp("r", "s", "ours", 0, 10_000, "time_limit", 0, (), uptime_s=300.0)
    assert matched.end(ramp) == "time_limit at 10,000 (turn 1, host up 5 min)"
    failed = matched.Ramp("r", "s", "ours", 1, 50, "failure: x never printed READY", 3, ())
    assert matched.end(failed) == "a failure (Not as planned, below) at 50 (turn 4)"
    assert failed.why_short() == "stopped by a failure at 50"
    older = matched.Ramp("r", "s", "ours", 0, 800, None, None, ())
    assert matched.end(older) == "reached 800 (how it ended: not recorded)"
    assert older.why_short() == "reached 800"
    capped = matched.Ramp("r", "s", "qemu", 0, 400, "max_instances", 2, ())
    assert capped.why_short() == "its cap, 400"
