"""The report: headline first (human units, like-for-like ratios with bootstrap intervals),
charts that read alone, one self-contained page, raw detail and host counters apart, the
history across runs and the compare page."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from synthetic_runs import MIB, make_run

from harness import baseline, report
from harness.cli import main
from harness.kinds import registry as kinds
from harness.report import headline, history, units
from harness.results import RunWriter, Sample

BUILT_IN_CHARTS = ["startup-start_to_ready_s", "startup-stop_s", "density-density",
                   "memory-memory"]
INPUT_COUNTERS = ("host_mem_available_bytes", "ksm_pages_sharing")


def _section(text: str, title: str) -> str:
    """The Markdown of ``## title`` up to the next ``## ``."""
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _variant_run(results_dir: Path, run_id: str = "v", floor: bool = True) -> Path:
    """Startup with cold and warm turns: process cold 1 ms / warm 0.5 ms, ours cold 4 ms /
    warm 1 ms, crun cold 10 ms / warm 5 ms, libvirt cold 2 s (a VM; no qemu floor)."""
    writer = RunWriter.create(results_dir, run_id, {"suite": "t", "accel": {"accel": "tcg"}})
    rng = np.random.default_rng(7)
    centres = {("process", "cold"): 0.001, ("process", "warm"): 0.0005,
               ("ours", "cold"): 0.004, ("ours", "warm"): 0.001,
               ("crun", "cold"): 0.010, ("crun", "warm"): 0.005, ("libvirt", "cold"): 2.0}
    if not floor:
        centres = {k: v for k, v in centres.items() if k[0] != "process"}
    for (backend, variant), centre in centres.items():
        accel = "tcg" if backend == "libvirt" else "none"
        writer.add([Sample(run_id=run_id, scenario="startup", kind="startup", backend=backend,
                           metric=metric, value=centre * factor * rng.lognormal(0, 0.02),
                           unit="s", variant=variant, repetition=i, accel=accel, position=i % 3)
                    for i in range(12) for metric, factor in (("start_to_ready_s", 1),
                                                              ("stop_s", 0.5))])
    writer.finish("complete")
    return writer.directory


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> Path:
    """The report of a quick-suite-shaped run (every kind, every backend), reference crun."""
    results_dir = tmp_path_factory.mktemp("full") / "results"
    run_dir = make_run(results_dir, "r", seed=1, repetitions=10)
    return report.write_report([run_dir], reference={"container": "crun"})


# ------------------------------------------------------------------ files and sections


def test_built_in_kinds_draw_their_charts(full_report) -> None:
    output = full_report
    assert sorted(p.name for p in output.iterdir()) == sorted(
        [f"{stem}.{suffix}" for stem in BUILT_IN_CHARTS for suffix in ("png", "svg")]
        + ["index.html", "summary.md"])
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
    assert sorted(p.name for p in output.iterdir()) == ["index.html", "summary.md"]
    summary = (output / "summary.md").read_text()
    assert "| echo | process | echo_s | 4 |" in summary  # the raw detail
    assert "| **echo_s** | process | - | 4 | 1.50 ms |" in summary  # a generic headline


def test_summary_is_headline_first_in_human_units_counters_apart(full_report) -> None:
    summary = (full_report / "summary.md").read_text()
    titles = re.findall(r"^## (.+)$", summary, re.M)
    assert titles[:2] == ["Headline", "Charts"] and titles[-1] == "Raw detail"
    top = _section(summary, "Headline")
    assert "### startup: containers (floor `process`, reference `crun`)" in top
    assert "### memory: VMs, accel tcg (floor `qemu`)" in top
    assert not re.search(r"\d[eE][+-]\d", summary), "no scientific notation anywhere"
    for counter in INPUT_COUNTERS:
        assert counter not in top  # inputs are not results
    detail = _section(summary, "Raw detail")
    assert detail.index("#### Results") < detail.index("#### Host readings")
    readings = detail[detail.index("#### Host readings"):]
    assert all(counter in readings for counter in INPUT_COUNTERS)
    assert "host_mem_available_bytes" not in detail[:detail.index("#### Host readings")]
    # memory in MiB, latencies in ms or s, three significant figures
    assert re.search(r"\| \*\*PSS of its processes\*\* \| process \| ksm=off \| 8 \| "
                     r"0\.3\d\d MiB \|", top)
    assert re.search(r"\| \*\*start → READY\*\* \| qemu \| - \| 5 \| 1\.\d\d s \|", top)
    assert "Methodology" in titles and "Host and versions" in titles


def test_ratios_to_the_floor_and_reference_with_intervals(tmp_path) -> None:
    run_dir = make_run(tmp_path / "results", "r", seed=1, repetitions=20)
    samples = report.load([run_dir])
    tables = headline.tables(samples, headline.references(["crun", "libvirt"]))
    rows = {(t.scenario, t.family, r.measure.metric, r.backend, r.variant): r
            for t in tables for r in t.rows}
    ours = rows[("startup", "container", "start_to_ready_s", "ours", "")]
    assert ours.to_floor.value == pytest.approx(4.0, rel=0.05)  # synthetic: 4 ms / 1 ms
    assert ours.to_floor.low < 4.0 < ours.to_floor.high and ours.to_floor.real
    runc = rows[("startup", "container", "start_to_ready_s", "runc", "")]
    assert runc.to_reference.value == pytest.approx(26 / 11, rel=0.05)
    assert rows[("startup", "container", "start_to_ready_s", "crun", "")].to_reference.note \
        == "reference"
    libvirt = rows[("startup", "vm", "start_to_ready_s", "libvirt", "")]
    assert libvirt.to_floor.value == pytest.approx(2.0 / 1.8, rel=0.05)  # to qemu, not process
    # the same figures twice: the bootstrap is seeded
    again = headline.tables(samples, headline.references(["crun"]))
    assert [r.to_floor for t in again for r in t.rows] == \
        [r.to_floor for t in tables for r in t.rows]
    # the headers say the pairing
    table = next(t for t in tables if t.scenario == "startup" and t.family == "container")
    assert table.floor_header == "× process (same variant), 95% CI"
    assert table.reference_header == "× crun (same variant), 95% CI"


def test_a_restore_row_is_also_set_against_ours_warm_or_its_own_cold(tmp_path) -> None:
    """Restore rows (issue 24): a container restore against ours' warm start, a VM restore
    against the same guest's cold boot, in a column of their own; no other row has it."""
    run_id = "restore"
    writer = RunWriter.create(tmp_path, run_id, {"suite": "t", "accel": {"accel": "tcg"}})
    rng = np.random.default_rng(11)
    centres = {("process", "cold"): 0.001, ("process", "warm"): 0.0005,
               ("ours", "cold"): 0.004, ("ours", "warm"): 0.002, ("runc", "cold"): 0.3,
               ("runc", "restore"): 0.8, ("qemu", "cold"): 1.6, ("qemu", "restore"): 0.16}
    for (backend, variant), centre in centres.items():
        writer.add([Sample(run_id=run_id, scenario="startup", kind="startup", backend=backend,
                           metric="start_to_ready_s", value=centre * rng.lognormal(0, 0.02),
                           unit="s", variant=variant, repetition=i,
                           accel="tcg" if backend == "qemu" else "none", position=i % 3)
                    for i in range(12)])
    writer.finish("complete")
    tables = headline.tables(report.load([writer.directory]))
    rows = {(r.backend, r.variant): r for t in tables for r in t.rows}
    assert rows[("runc", "restore")].to_anchor.value == pytest.approx(0.8 / 0.002, rel=0.05)
    assert rows[("qemu", "restore")].to_anchor.value == pytest.approx(0.1, rel=0.05)
    assert rows[("runc", "restore")].to_anchor.real  # 12 samples a side: an interval
    assert all(r.to_anchor is None for key, r in rows.items() if key[1] != "restore")
    assert math.isnan(rows[("runc", "restore")].to_floor.value)  # no process restore
    headers = {t.family: t.anchor_header for t in tables}
    assert headers == {"container": "× ours warm (restore rows), 95% CI",
                       "vm": "× its own cold (restore rows), 95% CI"}
    summary = (report.write_report([writer.directory]) / "summary.md").read_text()
    assert "× ours warm (restore rows), 95% CI |" in summary
    assert re.search(r"\| runc \| restore \| 12 \| .* \| \*\*4\d\d×\*\* ", summary)


def test_two_samples_of_one_distribution_give_an_interval_around_one() -> None:
    rng = np.random.default_rng(3)
    ratio = headline.ratio_of_medians(rng.lognormal(0, 0.1, 30), rng.lognormal(0, 0.1, 30))
    assert ratio.low < 1 < ratio.high and not ratio.real
    assert not headline.ratio_of_medians([1.0, 2.0], [1.0, 2.0]).has_interval  # n < 3
    assert math.isnan(headline.ratio_of_medians([1.0] * 3, [-1.0] * 3).value)  # floor <= 0


def test_ratios_pair_cold_with_cold_and_warm_with_warm(tmp_path) -> None:
    run_dir = _variant_run(tmp_path)
    samples = report.load([run_dir])
    tables = headline.tables(samples, {"container": "crun"})
    rows = {(r.measure.metric, r.backend, r.variant): r for t in tables for r in t.rows}
    assert rows[("start_to_ready_s", "ours", "cold")].to_floor.value == \
        pytest.approx(4.0, rel=0.05)
    assert rows[("start_to_ready_s", "ours", "warm")].to_floor.value == \
        pytest.approx(2.0, rel=0.05)  # 1 ms / 0.5 ms: warm with warm
    assert rows[("start_to_ready_s", "ours", "warm")].to_reference.value == \
        pytest.approx(0.2, rel=0.05)  # crun warm, not crun cold
    # a VM never gets the container floor: no qemu in this run, so no ratio
    vm = rows[("start_to_ready_s", "libvirt", "cold")]
    assert math.isnan(vm.to_floor.value) and vm.to_floor.note == "no qemu in this run"
    assert vm.to_reference is None  # the reference is a container
    summary = (report.write_report([run_dir], reference={"container": "crun"})
               / "summary.md").read_text()
    assert re.search(r"\| ours \| warm \| 12 \| \S+ [µm]s \| \S+ [µm]s \| \*\*2\.0\d×\*\* ",
                     summary)
    assert "- (no qemu in this run)" in summary


def test_reference_is_one_known_backend_per_family() -> None:
    assert headline.references(["crun", "libvirt"]) == {"container": "crun", "vm": "libvirt"}
    with pytest.raises(ValueError, match="two references of the containers family"):
        headline.references(["crun", "runc"])
    with pytest.raises(ValueError, match="unknown backend 'vbox'"):
        headline.references(["vbox"])


@pytest.mark.parametrize(("value", "unit", "text"), [
    (2.035e7, "bytes", "19.4 MiB"), (0.000545, "s", "545 µs"), (0.0109, "s", "10.9 ms"),
    (2.16, "s", "2.16 s"), (1234.5, "s", "1,230 s"), (100, "count", "100"),
    (-4.3 * MIB, "bytes", "−4.30 MiB"), (2.5e10, "bytes", "23.3 GiB"), (4.123, "ratio", "4.12×"),
    (0.9996, "ratio", "1.00×"), (12, "pages", "12 pages"),
])
def test_human_units_three_significant_figures(value, unit, text) -> None:
    assert units.human(value, unit) == text


# ------------------------------------------------------------------ charts


def _captured(monkeypatch) -> list:
    """Figures the chart functions save, kept open for inspection."""
    import harness.charts

    figures: list = []
    real = harness.charts.save

    def save(figure, output, stem, formats=("png", "svg")):
        figures.append(figure)
        return real(figure, output, stem, formats)

    monkeypatch.setattr(harness.charts, "save", save)
    return figures


def test_density_memory_is_linear_and_keeps_negative_deltas(tmp_path, monkeypatch) -> None:
    run_dir = make_run(tmp_path / "results", "r", seed=1, repetitions=3,
                       kinds=("density",), backends=("process", "crun"))
    samples = report.load([run_dir])
    first = (samples.metric == "host_mem_used_bytes") & (samples.step == 1) \
        & (samples.backend == "crun")
    samples.loc[first, "value"] = -4.3 * MIB  # the crun at 10 containers
    figures = _captured(monkeypatch)
    paths = report.density_charts(samples, "density", tmp_path)
    (figure,) = figures
    memory_axis = figure.axes[0]
    assert memory_axis.get_yscale() == "linear" and memory_axis.get_xscale() == "linear"
    crun = next(line for line in memory_axis.get_lines() if line.get_label().startswith("crun"))
    assert crun.get_ydata()[0] == pytest.approx(-4.3)  # shown, not dropped
    assert "≤ 0: noise" in memory_axis.get_legend_handles_labels()[1]
    svg = next(p for p in paths if p.suffix == ".svg").read_text()
    assert "container, no accel" in svg and "MiB" in svg and "ms" in svg


def test_every_chart_states_backend_variant_accel_and_unit(tmp_path) -> None:
    output = report.write_report([_variant_run(tmp_path)], tmp_path / "out")
    svg = (output / "startup-start_to_ready_s.svg").read_text()
    for text in ("ours", "warm", "cold", "no accel", "accel tcg", "ms"):
        assert text in svg, text
    run_dir = make_run(tmp_path / "results", "r", seed=1, repetitions=3, kinds=("memory",))
    memory = report.memory_chart(report.load([run_dir]), "memory", tmp_path)[1].read_text()
    for text in ("ksm=on", "ksm=off", "VM, accel tcg", "container, no accel", "MiB"):
        assert text in memory, text


# ------------------------------------------------------------------ the page


def test_page_is_self_contained_with_every_section(full_report) -> None:
    page = (full_report / "index.html").read_text()
    for section in ("headline", "charts", "methodology", "host", "detail"):
        assert f'<section id="{section}">' in page
    assert page.count("<figure") == len(BUILT_IN_CHARTS) == page.count("<svg")
    assert not re.search(r"<script|<link|<img|src=|https?://(?!www\.w3\.org)", page)
    assert page.count('<table class="headline"') == 6  # 3 scenarios x 2 families
    assert "× crun (same variant), 95% CI" in page
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "ids are unique across the inlined SVGs"
    assert page.index('id="headline"') < page.index('id="charts"') \
        < page.index('id="methodology"') < page.index('id="detail"')


# ------------------------------------------------------------------ history


def _git(repo: Path, *args: str, date: str | None = None) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "PATH": "/usr/bin:/bin"}
    if date:
        env |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


def _commits(repo: Path, dates: list[str]) -> list[str]:
    _git(repo, "init", "-q")
    shas = []
    for date in dates:
        _git(repo, "commit", "-q", "--allow-empty", "-m", date, date=date)
        shas.append(_git(repo, "rev-parse", "HEAD"))
    return shas


def _set_commit(run_dir: Path, commit: str) -> None:
    import json

    path = run_dir / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata["git_commit"] = commit
    path.write_text(json.dumps(metadata))


def test_history_in_commit_order_with_baseline_and_regressions(tmp_path) -> None:
    results_dir = tmp_path / "results"
    old, new = _commits(tmp_path, ["2026-11-01T10:00:00", "2026-11-02T10:00:00"])
    kinds_ = ("startup", "memory")
    base = make_run(tmp_path / "made", "base", seed=1, repetitions=20, kinds=kinds_)
    baseline.set_baseline(base, results_dir / "baseline")
    # started in the other order than their commits
    slow = make_run(results_dir, "20261127T120000-slow", seed=2, repetitions=20,
                    started_at="2026-11-27T12:00:00+00:00", kinds=kinds_,
                    shifts={("crun", "start_to_ready_s"): 1.6})
    same = make_run(results_dir, "20261127T130000-same", seed=3, repetitions=20,
                    started_at="2026-11-27T13:00:00+00:00", kinds=kinds_)
    _set_commit(slow, new)
    _set_commit(same, old + "-dirty")
    runs = history.find_runs(results_dir)
    assert [run.name for run in runs] == [same.name, slow.name]  # commit order
    output = history.write_history(results_dir)
    summary = (output / "summary.md").read_text()
    assert "| 20261127T120000-slow |" in summary and "start_to_ready_s_vs_process" in summary
    assert summary.count("start_to_ready_s_vs_process") == 1  # only crun of the slow run
    page = (output / "index.html").read_text()
    assert "1 regression(s)" in page and "0 regression(s)" in page
    assert "the baseline test (commit-base" in page  # the baseline is named, and drawn dashed
    figures = re.findall(r'<figure class="chart" id="chart-([^"]+)"', page)
    assert "startup-start_to_ready_s" in figures and "memory-mem_pss_bytes" in figures
    assert not any(counter in name for name in figures for counter in INPUT_COUNTERS)
    assert "regression (crun)" in page  # the cross on crun's line
    assert re.search(r"median ratio to the family floor", page)


def test_history_without_baseline_gates_each_run_on_the_previous(tmp_path) -> None:
    results_dir = tmp_path / "results"
    make_run(results_dir, "a", seed=1, repetitions=20, started_at="2026-11-27T10:00:00+00:00",
             kinds=("startup",))
    make_run(results_dir, "b", seed=2, repetitions=20, started_at="2026-11-27T11:00:00+00:00",
             kinds=("startup",), shifts={("ours", "stop_s"): 2.0})
    summary = (history.write_history(results_dir, tmp_path / "h", alpha=0.05)
               / "summary.md").read_text()
    assert "first run, no baseline: not gated" in summary
    assert "| b | commit-b | startup | ours | - | stop_s_vs_process |" in summary
    assert "previous run a" in summary


# ------------------------------------------------------------------ through the CLI


def test_cli_report_reference_history_and_compare_page(tmp_path, capsys) -> None:
    results_dir = tmp_path / "results"
    make_run(results_dir, "base", seed=1, repetitions=10, kinds=("startup",))
    make_run(results_dir, "cand", seed=2, repetitions=10, started_at="2026-11-27T11:00:00+00:00",
             shifts={("crun", "start_to_ready_s"): 1.5}, kinds=("startup",))
    args = ["--results-dir", str(results_dir)]
    assert main(["report", "cand", "--reference", "crun,libvirt", *args]) == 0
    assert "× libvirt (same variant)" in (results_dir / "cand/report/index.html").read_text()
    assert main(["report", "cand", "--reference", "crun,runc", *args]) == 2
    assert "two references" in capsys.readouterr().err
    assert main(["report", "--history", str(results_dir), "--output", str(tmp_path / "h")]) == 0
    assert (tmp_path / "h" / "index.html").is_file()
    with pytest.raises(SystemExit):
        main(["report", "cand", "--history", str(results_dir), *args])
    page = tmp_path / "compare.html"
    assert main(["compare", "base", "cand", "--html", str(page), "--alpha", "0.01", *args]) == 1
    text = page.read_text()
    assert '<section id="verdicts">' in text and '<tr class="regression">' in text
    assert "chart-startup-start_to_ready_s" in text and "baseline left, candidate right" in text
    assert "<script" not in text


def test_a_run_with_ladder_rungs_gets_where_the_time_goes(tmp_path) -> None:
    steps = {"floor:bare": [], "floor:ns": ["namespaces"], "floor": ["namespaces", "rootfs"]}
    metadata = {"backends": {"process": {}, "ours": {}, **{name: {"steps": value}
                                                            for name, value in steps.items()}},
                "backend_order": ["process", "floor:bare", "floor:ns", "floor", "ours"]}
    writer = RunWriter.create(tmp_path, "r1", metadata)
    medians_ms = {"process": 1.0, "floor:bare": 1.5, "floor:ns": 2.5, "floor": 3.0, "ours": 9.0}
    writer.add(Sample("r1", "ladder-startup", "startup", backend, "start_to_ready_s",
                      (median + offset) / 1e3, "s", variant=variant, repetition=index)
               for backend, median in medians_ms.items() for variant in ("cold", "warm")
               for index, offset in enumerate((-0.1, 0.0, 0.1)))
    writer.finish("complete")
    output = report.write_report([writer.directory])
    summary = (output / "summary.md").read_text()
    assert "![ladder-startup-ladder](ladder-startup-ladder.png)" in summary
    # the ladder's rows in its order (the headline's in the registry's), each step's cost
    ladder = summary[summary.index("### The isolation ladder: ladder-startup"):]
    rows = [line.split(" | ")[:4] for line in ladder.splitlines()[6:11]]
    assert rows == [["| process", "process (fork/exec)", "1.00 ms, 1.09 ms", "1.00 ms"],
                    ["| floor:bare", "+ the floor launcher (no step)", "1.50 ms, 1.59 ms",
                     "0.500 ms"],
                    ["| floor:ns", "+ namespaces", "2.50 ms, 2.59 ms", "1.00 ms"],
                    ["| floor", "+ rootfs", "3.00 ms, 3.09 ms", "0.500 ms"],
                    ["| ours", "ours over floor", "9.00 ms, 9.09 ms", "6.00 ms"]]
    page = (output / "index.html").read_text()
    assert 'id="chart-ladder-startup-ladder"' in page
    assert "<figcaption>ladder-startup: where the time (or memory) goes" in page
