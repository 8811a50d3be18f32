"""A kind added by one module and one registry entry (``tests/widgets_kind.py``): its metric
reaches the run's samples, the report (headline in its unit, chart with its caption) and the
gate (a regression of it fails), with no other file knowing the kind or its metric."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import widgets_kind

from harness import hostinfo, normalize, report, runner, scenario
from harness.gate import compare, verdicts
from harness.kinds import registry as kinds

SUITE = """
[suite]
name = "widgets"
backends = ["fake", "fakevm"]
seed = 5

[[scenario]]
kind = "widgets"
name = "made"
rate = {rate}
"""


@pytest.fixture
def widgets(fake_backends, state_dir, monkeypatch) -> Iterator[None]:
    """The kind in the table as its one entry; host facts that need no probing."""
    monkeypatch.setattr(hostinfo, "collect", lambda: {
        "host": {"hostname": "test", "kernel": "6.1", "cpus": 2, "cgroup_mode": "hybrid"},
        "accel": {"accel": "tcg"}, "git_commit": "test"})
    kinds.register(kinds.KindInfo("widgets", "widgets_kind:KIND"))
    yield
    kinds.unregister("widgets")


def _run(tmp_path: Path, rate: float, name: str) -> Path:
    suite = scenario.loads(SUITE.format(rate=rate), tmp_path / "widgets.toml")
    return runner.run_suite(suite, tmp_path / name, quiet=True)  # run ids: one a second


def test_a_kind_of_one_module_is_run_reported_and_gated(tmp_path, widgets) -> None:
    base = _run(tmp_path, 100.0, "base")
    frame = pd.read_csv(base / "samples.csv")
    made = frame[frame.metric == widgets_kind.METRIC]
    assert set(made.kind) == {"widgets"} and set(made.unit) == {widgets_kind.UNIT}
    assert made.groupby("backend").size().to_dict() == {"fake": 8, "fakevm": 8}
    assert not normalize.is_host_reading(made).any()  # a result: divided by a floor

    output = report.write_report([base], tmp_path / "report")
    page = (output / "index.html").read_text()
    summary = (output / "summary.md").read_text()
    assert f"made: {widgets_kind.CAPTION}" in page  # the chart, captioned as declared
    assert "widgets made" in summary and "100 widgets/s" in summary  # headline, in its unit

    assert verdicts.direction(widgets_kind.METRIC, "widgets") == verdicts.HIGHER_IS_BETTER
    same = compare.compare_runs(base, _run(tmp_path, 100.0, "same"))
    assert not same.failed and {row.metric for row in same.rows} == {widgets_kind.METRIC}
    fewer = compare.compare_runs(base, _run(tmp_path, 50.0, "fewer"))  # half the widgets: worse
    assert fewer.failed
    assert {(row.backend, row.metric) for row in fewer.regressions} == {
        ("fake", widgets_kind.METRIC), ("fakevm", widgets_kind.METRIC)}
    more = compare.compare_runs(base, _run(tmp_path, 200.0, "more"))  # twice: better, not failed
    assert not more.failed and len(more.improvements) == 2
