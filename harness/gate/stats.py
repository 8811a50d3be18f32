"""Two sample frames → one :class:`Row` per rated metric: medians, rule, test, verdict.

For every scenario, backend, variant and metric present in both frames, the two
distributions (one value per repetition, instance or pass) are judged by the rule their sizes
call for (:func:`harness.gate.verdicts.rule`): with enough values a two-sided Mann-Whitney U
test and the threshold, with few (one figure per pass or per run) the threshold on the
median alone, as a tolerance. Only metrics whose kind declares a better/worse direction are
judged (:func:`harness.gate.verdicts.gated`): readings of the host's state (density curve
points and counters) and figures said but not gated are left out.

Frames are compared only with like: accel, network, guest memory and image digest must match
for every compared metric (an image change can be allowed explicitly).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness import normalize
from harness.backends import registry
from harness.gate import verdicts
from harness.gate.errors import CompareError
from harness.gate.thresholds import Thresholds

if TYPE_CHECKING:
    import pandas as pd

KEY = ("scenario", "kind", "backend", "variant", "metric")
MUST_MATCH = ("accel", "network", "guest_memory_mib", "image_digest")
DEFAULT_ALPHA = 0.05

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One compared metric."""

    scenario: str
    backend: str
    variant: str
    metric: str
    unit: str
    n_base: int
    n_cand: int
    base_median: float
    cand_median: float
    ratio: float  # candidate median / baseline median; NaN when there is none
    p_value: float  # NaN when not tested
    threshold: float
    verdict: str
    rule: str = ""  # verdicts.RANK or verdicts.TOLERANCE; "" when one side is missing

    @property
    def regression(self) -> bool:
        return self.verdict == verdicts.REGRESSION

    @property
    def tested(self) -> bool:
        """True when a significance test was made (the rank rule)."""
        return not math.isnan(self.p_value)


def compare_samples(base: pd.DataFrame, cand: pd.DataFrame,
                    thresholds: Thresholds | None = None, alpha: float = DEFAULT_ALPHA,
                    allow_image_change: bool = False) -> tuple[list[Row], list[str]]:
    """Rows for every rated metric of two sample frames, and notes; CompareError if unlike."""
    thresholds = thresholds or Thresholds()
    base, cand = rated_samples(base), rated_samples(cand)
    notes = _check_dimensions(base, cand, allow_image_change)
    base_groups = dict(tuple(base.groupby(list(KEY), sort=False)))
    cand_groups = dict(tuple(cand.groupby(list(KEY), sort=False)))
    if not set(base_groups) & set(cand_groups):
        raise CompareError("the runs have no metric in common (different scenarios or backends?)")
    rows = [_row(key, base_groups.get(key), cand_groups.get(key), thresholds, alpha)
            for key in [*base_groups, *(k for k in cand_groups if k not in base_groups)]]
    log.info("%d metric(s) compared: %d regression(s), %d improvement(s)", len(rows),
             sum(row.regression for row in rows),
             sum(row.verdict == verdicts.IMPROVEMENT for row in rows))
    return _ordered(rows), notes


def _row(key: tuple[str, ...], old: pd.DataFrame | None, new: pd.DataFrame | None,
         thresholds: Thresholds, alpha: float) -> Row:
    scenario, kind, backend, variant, metric = key
    present = old if old is not None else new
    assert present is not None, "a key comes from one of the two frames"
    unit = str(present.unit.iloc[0])
    base_values = _values(old)
    cand_values = _values(new)
    base_median, cand_median = _median(base_values), _median(cand_values)
    threshold = thresholds.lookup(backend, metric, variant)
    ratio, p_value, rule = _ratio(base_median, cand_median), math.nan, ""
    if old is None or new is None:
        verdict = verdicts.NEW_IN_CANDIDATE if old is None else verdicts.MISSING_IN_CANDIDATE
        ratio = math.nan
    else:
        rule = verdicts.rule(len(base_values), len(cand_values))
        if rule == verdicts.RANK:
            p_value = mann_whitney_p(base_values, cand_values)
        verdict = verdicts.verdict(metric, len(base_values), len(cand_values), ratio, p_value,
                                   threshold, alpha, kind)
    log.debug("%s/%s/%s%s: n %d/%d, medians %g/%g, p %g, threshold %g: %s", scenario, backend,
              metric, f" [{variant}]" if variant else "", len(base_values), len(cand_values),
              base_median, cand_median, p_value, threshold, verdict)
    return Row(scenario, backend, variant, metric, unit, len(base_values), len(cand_values),
               base_median, cand_median, ratio, p_value, threshold, verdict, rule)


def mann_whitney_p(base_values: Sequence[float], cand_values: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value (1.0 where scipy gives NaN, e.g. all values equal)."""
    from scipy.stats import mannwhitneyu

    result = mannwhitneyu(base_values, cand_values, alternative="two-sided")
    p_value = float(result.pvalue)
    return 1.0 if math.isnan(p_value) else p_value


def rated_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """Only rated outcomes (no host readings), with empty dimensions as ''."""
    frame = samples[verdicts.gated(samples)].copy()
    for column in (*KEY, *MUST_MATCH):
        frame[column] = frame[column].map(normalize.plain)
    return frame


def _check_dimensions(base: pd.DataFrame, cand: pd.DataFrame,
                      allow_image_change: bool) -> list[str]:
    """Raise CompareError on mismatched dimensions; return notes about allowed differences."""
    problems: dict[tuple[str, str, str], str] = {}
    notes: dict[tuple[str, str, str], str] = {}
    cand_groups = dict(tuple(cand.groupby(list(KEY), sort=False)))
    for key, base_group in base.groupby(list(KEY), sort=False):
        cand_group = cand_groups.get(key)
        if cand_group is None:
            continue
        scenario, _, backend, variant, _ = key
        where = "/".join(filter(None, (scenario, backend, variant)))
        for column in MUST_MATCH:
            was = sorted(set(base_group[column]))
            now = sorted(set(cand_group[column]))
            if was == now:
                continue
            text = (f"{column} differs for {where}: baseline {', '.join(was) or '-'}, "
                    f"candidate {', '.join(now) or '-'}")
            if column == "image_digest" and allow_image_change:
                notes[(column, scenario, backend)] = text + " (allowed)"
            else:
                problems.setdefault((column, scenario, backend), text)
    if problems:
        shown = list(problems.values())
        more = f" (and {len(shown) - 5} more)" if len(shown) > 5 else ""
        hint = (" (pass --allow-image-change to compare across images)"
                if any(column == "image_digest" for column, _, _ in problems) else "")
        raise CompareError("refusing to compare unlike runs: " + "; ".join(shown[:5]) + more
                           + hint)
    return list(notes.values())


def _values(group: pd.DataFrame | None) -> Any:
    """The group's values as a float array (empty for a missing group)."""
    import numpy as np

    return group.value.to_numpy(dtype=float) if group is not None else np.array([], float)


def _median(values: Any) -> float:
    import numpy as np

    return float(np.median(values)) if len(values) else math.nan


def _ratio(base_median: float, cand_median: float) -> float:
    if base_median > 0 and cand_median >= 0:
        return cand_median / base_median
    if base_median == 0 and cand_median == 0:
        return 1.0
    return math.nan


def _ordered(rows: list[Row]) -> list[Row]:
    """Grouped by scenario (first appearance), backend (floor first), variant."""
    scenarios = list(dict.fromkeys(row.scenario for row in rows))
    backends = list(dict.fromkeys([*registry.names(), *(row.backend for row in rows)]))
    return sorted(rows, key=lambda row: (scenarios.index(row.scenario),
                                         backends.index(row.backend), row.variant))
