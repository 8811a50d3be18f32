"""The kinds' table and their metric declarations: loaded when asked, one meaning per metric,
every metric a run records declared with its unit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.gate import verdicts
from harness.kinds import registry as kinds
from harness.kinds.base import LOWER, Headline, Metric

REPOSITORY = Path(__file__).resolve().parents[4]
BASELINE = REPOSITORY / "results" / "baseline" / "amd-epyc" / "samples.csv"


def _loaded_after(code: str) -> list[str]:
    code = (f"import sys\n{code}\n"
            "print(sorted(m for m in sys.modules if m.startswith('harness.kinds.')))")
    return subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True,
                          text=True, check=True).stdout.split("'")[1::2]


def test_a_kind_module_is_imported_only_when_asked_for() -> None:
    assert _loaded_after("from harness.kinds import registry\nregistry.names()") == [
        "harness.kinds.base", "harness.kinds.registry"]
    assert "harness.kinds.startup" not in _loaded_after(
        "from harness.kinds import registry\nregistry.info('density')")
    assert "harness.kinds.density" not in _loaded_after(
        "from harness import scenario\nscenario.make('startup')")


def test_every_metric_of_a_recorded_run_is_declared_by_its_kind_with_its_unit() -> None:
    samples = pd.read_csv(BASELINE)
    recorded = samples[["kind", "metric", "unit"]].drop_duplicates()
    assert len(recorded) > 40
    for kind, metric, unit in recorded.itertuples(index=False):
        declared = kinds.metric(metric, kind)
        assert declared is not None and declared.unit == unit, (kind, metric, unit)


def test_a_pattern_holds_in_its_own_kind_and_exact_names_win() -> None:
    # startup: the backends' own phases by pattern, gated; createxml_s by name, said only
    assert verdicts.direction("engine_start_s", "startup") == LOWER
    assert verdicts.direction("createxml_s", "startup") is None
    assert verdicts.direction("engine_start_s", "memory") is None  # not memory's pattern
    assert verdicts.direction("mem_item_slab_bytes", "memory") is None  # said, not gated
    assert kinds.metric("mem_item_slab_bytes", "memory") is not None
    assert verdicts.direction("ping_s", "no-such-kind") is None  # an old run's, unknown here
    assert verdicts.direction("ksm_pages_sharing", "memory") is None  # a host reading


def test_one_name_means_one_thing_in_every_kind() -> None:
    seen: dict[str, Metric] = {}
    for kind in kinds.loaded():
        for metric in kind.metrics:
            if metric.pattern:
                continue
            first = seen.setdefault(metric.name, metric)
            assert (first.unit, first.better, first.host_reading, first.input) == (
                metric.unit, metric.better, metric.host_reading, metric.input), metric.name


@pytest.mark.parametrize(("keys", "message"), [
    ({"better": "faster"}, "better must be one of"),
    ({"input": True}, "an input is a host reading"),
    ({"host_reading": True, "better": LOWER}, "a host reading is never gated"),
    ({"name": "x_*_s", "headline": Headline("x")}, "a headline needs an exact name"),
])
def test_a_declaration_that_contradicts_itself_is_refused(keys, message) -> None:
    with pytest.raises(ValueError, match=message):
        Metric(**{"name": "x_s", "unit": "s", **keys})
