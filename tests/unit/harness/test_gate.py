"""Every gated metric of the committed baseline can fail: a regression of its stated size
(its threshold plus :data:`MARGIN`), put into the baseline's own recorded samples, is a
regression by the metric's rule at the gate's alpha, in ratios to the floors and in absolute
figures; and the committed thresholds name exactly the baseline's gated metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness import baseline
from harness.gate import verdicts
from harness.gate.compare import load_run
from harness.gate.stats import KEY, compare_samples, mann_whitney_p, rated_samples
from harness.gate.thresholds import Thresholds
from harness.spread import threshold_key

REPO = Path(__file__).resolve().parents[3]
BASELINES = REPO / "results" / "baseline"
THRESHOLDS = BASELINES / "thresholds.toml"
GATE_ALPHA = 0.01  # scripts/quick-gate.sh
MARGIN = 0.05  # a regression of threshold + 5 points must fail


def _runs() -> list[Path]:
    return list(baseline.baselines(BASELINES).values())


def _frame(run: Path, normalized: bool):
    return rated_samples(load_run(run, normalized))


@pytest.mark.parametrize("normalized", [True, False], ids=["ratios", "absolute"])
def test_every_gated_metric_fails_a_regression_of_its_stated_size(normalized: bool) -> None:
    thresholds = Thresholds.load(THRESHOLDS)
    runs = _runs()
    assert runs, "no committed baseline"
    judged, missed = 0, []
    for run in runs:
        frame = _frame(run, normalized)
        for key, group in frame.groupby(list(KEY), sort=False):
            scenario, _, backend, variant, metric = key
            values = group.value.to_numpy(dtype=float)
            if not values.size or not values.any():
                continue
            threshold = thresholds.lookup(backend, metric, variant)
            worse = verdicts.worsened(values, metric, threshold + MARGIN)
            rule = verdicts.rule(len(values), len(worse))
            p_value = mann_whitney_p(values, worse) if rule == verdicts.RANK else float("nan")
            ratio = float(np.median(worse) / np.median(values))
            verdict = verdicts.verdict(metric, len(values), len(worse), ratio, p_value,
                                       threshold, GATE_ALPHA)
            judged += 1
            if verdict != verdicts.REGRESSION:
                missed.append(f"{scenario}/{backend}.{metric} [{variant}] n={len(values)} "
                              f"{rule} threshold {threshold:.0%}: {verdict} (p {p_value:.3g})")
    assert judged > 50
    assert not missed, "\n".join(missed)


def test_the_thresholds_name_every_gated_metric_and_nothing_else() -> None:
    thresholds = Thresholds.load(THRESHOLDS)
    gated: set[str] = set()
    for run in _runs():
        for normalized in (True, False):
            frame = _frame(run, normalized)
            rows, _ = compare_samples(frame, frame, thresholds, GATE_ALPHA)
            gated |= {threshold_key(row) for row in rows if row.rule}
    assert len(gated) > 50
    missing = sorted(gated - set(thresholds.metrics))
    stale = sorted(set(thresholds.metrics) - gated)
    assert not missing, f"no threshold for: {', '.join(missing)}"
    assert not stale, f"thresholds for what the baseline does not gate: {', '.join(stale)}"
    across = thresholds.across_kinds
    assert across is not None, "the [across_kinds] table is kept for other machine kinds"
    names = {key.split(".")[0] + "." + key.split(".")[-1] for key in gated}
    assert set(across.metrics) <= names, sorted(set(across.metrics) - names)
