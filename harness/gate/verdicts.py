"""Which way is worse for a metric, and the verdict on a change of its median.

A metric is a **regression** only when the change is statistically significant *and* worse
by more than its threshold. Add a metric's direction here when neither its exact name nor
its suffix says it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from harness.normalize import base_metric

LOWER_IS_BETTER = "lower"
HIGHER_IS_BETTER = "higher"
# The one place that says which way is worse. Exact names first, then suffixes. None: not
# gated (the phases of a start say where its time went; the start itself is gated).
DIRECTIONS: Mapping[str, str | None] = {
    "max_instances_alive": HIGHER_IS_BETTER,
    "start_call_s": None, "ready_wait_s": None, "createxml_s": None,
    # the harness's own share of an OCI start, stop and clean-up: said, not gated
    "harness_s": None, "stop_harness_s": None, "cleanup_harness_s": None,
    "iops": HIGHER_IS_BETTER,  # workloads: fio
}
SUFFIX_DIRECTIONS: tuple[tuple[str, str], ...] = (  # the first that matches decides
    ("_per_s", HIGHER_IS_BETTER),  # rates: events/s, ops/s
    ("_mib_s", HIGHER_IS_BETTER),  # bandwidth, MiB/s
    ("_mbit_s", HIGHER_IS_BETTER),  # throughput, Mbit/s
    ("_s", LOWER_IS_BETTER),  # latencies
    ("_bytes", LOWER_IS_BETTER),  # memory
)

REGRESSION = "regression"
IMPROVEMENT = "improvement"
OK = "ok"
WITHIN_THRESHOLD = "ok (within threshold)"
NOT_SIGNIFICANT = "ok (not significant)"
SINGLE_VALUE = "n/a (single value)"
NO_RATIO = "n/a (median <= 0)"
MISSING_IN_CANDIDATE = "missing in candidate"
NEW_IN_CANDIDATE = "new in candidate"


def direction(metric: str) -> str | None:
    """``lower`` or ``higher`` (is better) for a metric or its ``_vs_<floor>`` ratio; else None."""
    name = base_metric(metric)
    if name in DIRECTIONS:
        return DIRECTIONS[name]
    for suffix, way in SUFFIX_DIRECTIONS:
        if name.endswith(suffix):
            return way
    return None


def worse_by(metric: str, ratio: float) -> float:
    """Relative worsening of a median that moved by ``ratio`` (candidate / baseline).

    Positive when worse: ``0.3`` is 30% worse; negative when better.
    """
    if direction(metric) == HIGHER_IS_BETTER:
        return math.inf if ratio == 0 else 1 / ratio - 1
    return ratio - 1


def verdict(metric: str, n_base: int, n_cand: int, ratio: float, p_value: float,
            threshold: float, alpha: float) -> str:
    """The verdict on one metric: significant (``p_value < alpha``) and beyond ``threshold``."""
    if n_base < 2 or n_cand < 2:
        return SINGLE_VALUE
    if math.isnan(ratio):
        return NO_RATIO
    worse = worse_by(metric, ratio)
    significant = p_value < alpha
    beyond = abs(worse) > threshold
    if significant and beyond:
        return REGRESSION if worse > 0 else IMPROVEMENT
    if significant:
        return WITHIN_THRESHOLD
    if beyond:
        return NOT_SIGNIFICANT
    return OK
