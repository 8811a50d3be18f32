"""Which way is worse for a metric, the rule it is judged by, and the verdict on a change.

Two rules, chosen by the sample sizes (both sides), so that every gated metric can fail:

- **rank** (at least :data:`MIN_RANK_N` values a side: repetitions, instances): a
  **regression** when the two-sided Mann-Whitney U test is significant (p < alpha) *and* the
  median is worse by more than the metric's threshold.
- **tolerance** (fewer values: one figure per pass or per run, such as memory per instance
  from kernel counters, max instances, a teardown): a **regression** when the median is worse
  by more than the threshold. A rank test cannot reach alpha 0.01 with so few values (the
  smallest two-sided p at 2 against 2 is 0.33), so it would never fail; these figures are
  near-deterministic, and the threshold (from their run-to-run spread) is the tolerance.

Which way is worse is what each kind declares of its metrics
(:class:`harness.kinds.base.Metric` ``better``); a metric without a direction, or a reading
of the host's state, is reported, never gated.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.kinds import registry as kinds
from harness.kinds.base import HIGHER, LOWER
from harness.normalize import base_metric, flag

if TYPE_CHECKING:
    import pandas as pd

LOWER_IS_BETTER = LOWER
HIGHER_IS_BETTER = HIGHER

RANK = "rank"
TOLERANCE = "tolerance"
MIN_RANK_N = 8  # values a side for the rank rule; below it, the tolerance rule

REGRESSION = "regression"
IMPROVEMENT = "improvement"
OK = "ok"
WITHIN_THRESHOLD = "ok (within threshold)"
NOT_SIGNIFICANT = "ok (not significant)"
WITHIN_TOLERANCE = "ok (within tolerance)"
NO_RATIO = "n/a (median <= 0)"
MISSING_IN_CANDIDATE = "missing in candidate"
NEW_IN_CANDIDATE = "new in candidate"


def direction(metric: str, kind: str | None = None) -> str | None:
    """``lower`` or ``higher`` (is better) for a metric or its ``_vs_<floor>`` ratio, as
    ``kind`` declares it (without a kind: as the kinds declare that name); else None."""
    declared = kinds.metric(base_metric(metric), kind)
    return None if declared is None or declared.host_reading else declared.better


def gated(samples: pd.DataFrame) -> pd.Series:
    """Mask of the samples the gate judges: those whose kind gives their metric a direction
    (host readings never have one)."""
    return flag(samples, lambda metric: metric.better is not None)


def worse_by(metric: str, ratio: float, kind: str | None = None) -> float:
    """Relative worsening of a median that moved by ``ratio`` (candidate / baseline).

    Positive when worse: ``0.3`` is 30% worse; negative when better.
    """
    if direction(metric, kind) == HIGHER_IS_BETTER:
        return math.inf if ratio == 0 else 1 / ratio - 1
    return ratio - 1


def worsened(values: Any, metric: str, fraction: float, kind: str | None = None) -> Any:
    """``values`` (an array) made worse by ``fraction`` in the metric's direction: the
    regression :func:`worse_by` would read as ``fraction``."""
    return values / (1 + fraction) if direction(metric, kind) == HIGHER_IS_BETTER \
        else values * (1 + fraction)


def rule(n_base: int, n_cand: int) -> str:
    """The rule two samples of these sizes are judged by: :data:`RANK` or :data:`TOLERANCE`."""
    return RANK if min(n_base, n_cand) >= MIN_RANK_N else TOLERANCE


def verdict(metric: str, n_base: int, n_cand: int, ratio: float, p_value: float,
            threshold: float, alpha: float, kind: str | None = None) -> str:
    """The verdict on one metric by its :func:`rule`: beyond ``threshold`` and, for the rank
    rule, significant (``p_value < alpha``)."""
    if math.isnan(ratio):
        return NO_RATIO
    worse = worse_by(metric, ratio, kind)
    beyond = abs(worse) > threshold
    if rule(n_base, n_cand) == TOLERANCE:
        if beyond:
            return REGRESSION if worse > 0 else IMPROVEMENT
        return WITHIN_TOLERANCE
    significant = p_value < alpha
    if significant and beyond:
        return REGRESSION if worse > 0 else IMPROVEMENT
    if significant:
        return WITHIN_THRESHOLD
    if beyond:
        return NOT_SIGNIFICANT
    return OK
