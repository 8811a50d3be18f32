"""The report: each kind draws its own charts; the summary covers every kind, known or not."""

from __future__ import annotations

from synthetic_runs import make_run

from harness import report
from harness.kinds import registry as kinds
from harness.results import RunWriter, Sample

BUILT_IN_CHARTS = ["startup-start_to_ready_s", "startup-stop_s", "density-density",
                   "memory-memory"]


def test_built_in_kinds_draw_their_charts(tmp_path) -> None:
    run_dir = make_run(tmp_path / "results", "r", seed=1, repetitions=5)
    output = report.write_report([run_dir], tmp_path / "report")
    assert sorted(p.name for p in output.iterdir()) == sorted(
        [f"{stem}.{suffix}" for stem in BUILT_IN_CHARTS for suffix in ("png", "svg")]
        + ["summary.md"])
    summary = (output / "summary.md").read_text()
    links = [line for line in summary.splitlines() if line.startswith("![")]
    assert links == [f"![{stem}]({stem}.png)" for stem in BUILT_IN_CHARTS]
    assert all(kinds.info(name).charts for name in ("startup", "density", "memory"))


def test_a_kind_unknown_here_gets_its_summary_rows(tmp_path) -> None:
    writer = RunWriter.create(tmp_path, "r", {"suite": "t"})
    writer.add([Sample(run_id="r", scenario="echo", kind="echo", backend="process",
                       metric="echo_s", value=0.001 * i, unit="s", repetition=i)
                for i in range(4)])
    writer.finish("complete")
    output = report.write_report([writer.directory])
    assert sorted(p.name for p in output.iterdir()) == ["summary.md"]
    assert "| echo | process | echo_s | 4 |" in (output / "summary.md").read_text()
