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

Add a metric's direction here when neither its exact name nor its suffix says it; a metric
without one is reported, never gated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

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
    # the harness's CPU per launch in a density batch, from its process times in clock ticks:
    # mostly zero per batch, so no median to hold to a threshold; said, not gated
    "harness_cpu_per_launch_s": None, "harness_sys_per_launch_s": None,
    "iops": HIGHER_IS_BETTER,  # workloads: fio
}
# The itemised kernel memory of an instance (mem_item_*) partitions its host memory, which is
# gated (mem_host_delta_per_instance_bytes): the items are said, not gated. Each is a
# difference of two host-wide counters over one pass, and the small ones swing by several
# times from run to run (slab reclaim), which no useful threshold could ride over.
NOT_GATED_PREFIXES = ("mem_item_",)
SUFFIX_DIRECTIONS: tuple[tuple[str, str], ...] = (  # the first that matches decides
    ("_per_s", HIGHER_IS_BETTER),  # rates: events/s, ops/s
    ("_mib_s", HIGHER_IS_BETTER),  # bandwidth, MiB/s
    ("_mbit_s", HIGHER_IS_BETTER),  # throughput, Mbit/s
    ("_s", LOWER_IS_BETTER),  # latencies
    ("_bytes", LOWER_IS_BETTER),  # memory
)

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


def direction(metric: str) -> str | None:
    """``lower`` or ``higher`` (is better) for a metric or its ``_vs_<floor>`` ratio; else None."""
    name = base_metric(metric)
    if name.startswith(NOT_GATED_PREFIXES):
        return None
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


def worsened(values: Any, metric: str, fraction: float) -> Any:
    """``values`` (an array) made worse by ``fraction`` in the metric's direction: the
    regression :func:`worse_by` would read as ``fraction``."""
    return values / (1 + fraction) if direction(metric) == HIGHER_IS_BETTER \
        else values * (1 + fraction)


def rule(n_base: int, n_cand: int) -> str:
    """The rule two samples of these sizes are judged by: :data:`RANK` or :data:`TOLERANCE`."""
    return RANK if min(n_base, n_cand) >= MIN_RANK_N else TOLERANCE


def verdict(metric: str, n_base: int, n_cand: int, ratio: float, p_value: float,
            threshold: float, alpha: float) -> str:
    """The verdict on one metric by its :func:`rule`: beyond ``threshold`` and, for the rank
    rule, significant (``p_value < alpha``)."""
    if math.isnan(ratio):
        return NO_RATIO
    worse = worse_by(metric, ratio)
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
