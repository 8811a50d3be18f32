"""The headline: per scenario and family, what a reader came for, with honest ratios.

Each row is one backend and start (or KSM) variant: the median and p95 of a measure in human
units, the ratio of its median to the family's floor (``process`` for containers, ``qemu`` for
VMs) and, if the user picked one, to a reference backend of the same family, each with a
bootstrap confidence interval so a reader sees which differences are real. A ratio only ever
pairs samples of the same run, scenario, metric and variant (cold with cold, warm with warm,
``ksm=on`` with ``ksm=on``), and never crosses families. The one exception is labelled as
such: a ``restore`` row also gets a column of its own (:data:`RESTORE_ANCHORS`), its ratio to
ours' warm start (containers) or to the same guest's cold boot (VMs), which is what a
restore is for (issue 24 asks for both).

The measures are the metrics each kind declares with a headline
(:class:`harness.kinds.base.Headline`), in its order; a kind that declares none (the workload
kind, a plug-in, one an old run recorded) gets every result metric it recorded.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from harness import methodology, normalize
from harness.backends import registry
from harness.kinds import registry as kinds
from harness.kinds.base import Metric
from harness.kinds.density import SLOPE_METRIC
from harness.report import matched

if TYPE_CHECKING:
    import pandas as pd

MIN_CI_SAMPLES = 3  # on each side: fewer cannot bound a median
VARIANT_ORDER = ("", "cold", "warm", "restore", "ksm=off", "ksm=on")
RESTORE = "restore"
# What a restore row is set against, by family: (backend, variant); backend "" is the row's
# own. A restored container against ours' warm start (the quickest start from nothing made
# inside the clock); a restored VM against the same guest's cold boot.
RESTORE_ANCHORS = {registry.CONTAINER: ("ours", "warm"), registry.VM: ("", "cold")}
FAMILY_NAMES = {registry.CONTAINER: "containers", registry.VM: "VMs"}


@dataclass(frozen=True)
class Measure:
    """One headline figure of a kind: a declared metric's headline, or a result metric of a
    kind that declares none."""

    label: str
    metric: str
    unit: str  # as samples.csv names it: s, bytes, count
    tail: bool = True  # show the p95 too (a distribution, not one value per pass)
    ratio: bool = True  # show ratios to the floor and the reference
    note: str = ""

    @classmethod
    def of(cls, metric: Metric) -> Measure:
        assert metric.headline is not None, "a measure is a metric with a headline"
        line = metric.headline
        return cls(line.label, metric.name, metric.unit, line.tail, line.ratio, line.note)


@dataclass(frozen=True)
class Ratio:
    """The ratio of two medians and its confidence interval (NaN where there is none)."""

    value: float
    low: float = math.nan
    high: float = math.nan
    note: str = ""  # "floor", "reference", or why there is no ratio

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def real(self) -> bool:
        """True when the interval excludes 1: the difference is more than noise."""
        return self.has_interval and (self.low > 1 or self.high < 1)


@dataclass(frozen=True)
class Row:
    measure: Measure
    run: str
    backend: str
    variant: str
    n: int
    median: float
    p95: float
    to_floor: Ratio | None
    to_reference: Ratio | None
    to_anchor: Ratio | None = None  # a restore row's ratio to its family's RESTORE_ANCHORS


@dataclass
class Table:
    """The headline of one scenario and family."""

    scenario: str
    kind: str
    family: str
    floor: str
    reference: str | None
    accel: str
    runs: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)

    @property
    def title(self) -> str:
        accel = f", accel {self.accel}" if self.family == registry.VM and self.accel else ""
        return f"{self.scenario}: {FAMILY_NAMES.get(self.family, self.family)}{accel}"

    @property
    def floor_header(self) -> str:
        return f"× {self.floor} (same variant), 95% CI"

    @property
    def reference_header(self) -> str:
        return f"× {self.reference} (same variant), 95% CI" if self.reference else ""

    @property
    def anchor_header(self) -> str:
        """The restore rows' extra column, "" when the table has none."""
        if not any(row.variant == RESTORE for row in self.rows):
            return ""
        backend, variant = RESTORE_ANCHORS.get(self.family, ("", "cold"))
        return f"× {backend or 'its own'} {variant} (restore rows), 95% CI"

    @property
    def has_tail(self) -> bool:
        return any(row.measure.tail for row in self.rows)


def is_input(samples: pd.DataFrame) -> pd.Series:
    """Mask of the samples that are inputs or conditions of a run, not results (MemAvailable,
    Committed_AS, KSM pages, the density step's instance count): as their kinds declare."""
    return normalize.flag(samples, lambda metric: metric.input)


def references(names: Iterable[str]) -> dict[str, str]:
    """``--reference crun,libvirt`` → family → backend; ValueError on two of one family or an
    unknown backend."""
    chosen: dict[str, str] = {}
    for name in names:
        registry.NAME.check(name)  # hostkit.validate.Invalid, a ValueError
        family = registry.family(name)
        if family in chosen:
            raise ValueError(f"two references of the {FAMILY_NAMES[family]} family: "
                             f"{chosen[family]} and {name} (one per family)")
        chosen[family] = name
    return chosen


def with_derived(samples: pd.DataFrame) -> pd.DataFrame:
    """``samples`` plus the density scenario's host memory per instance: per run, scenario,
    backend and ramp (``repetition``), the Theil–Sen slope of ``host_mem_used_bytes`` over
    ``instances_alive`` (the offset at the first step, often negative at low counts, is the
    intercept: noise)."""
    import pandas as pd

    curve = samples[samples.metric.isin(["host_mem_used_bytes", "instances_alive"])]
    if curve.empty:
        return samples
    rows = []
    keys = ["run_id", "scenario", "kind", "backend", "accel", "repetition"]
    for key, group in curve.groupby(keys, sort=False, dropna=False):
        steps = group.pivot_table(index="step", columns="metric", values="value")
        if not {"host_mem_used_bytes", "instances_alive"} <= set(steps.columns):
            continue
        steps = steps.dropna()
        if steps.empty:
            continue
        slope = _slope(steps.instances_alive.to_numpy(float),
                       steps.host_mem_used_bytes.to_numpy(float))
        first = group.iloc[0]
        rows.append({**first.to_dict(), **dict(zip(keys, key, strict=True)),
                     "metric": SLOPE_METRIC, "value": slope, "unit": "bytes", "step": math.nan,
                     "instance": math.nan})
    return pd.concat([samples, pd.DataFrame(rows)], ignore_index=True) if rows else samples


def _slope(alive: np.ndarray, used: np.ndarray) -> float:
    if len(alive) == 1 or np.ptp(alive) == 0:
        return float(np.median(used / np.maximum(alive, 1)))
    from scipy.stats import theilslopes

    return float(theilslopes(used, alive).slope)


def measures_of(kind: str, scenario_samples: pd.DataFrame) -> tuple[Measure, ...]:
    """The kind's headline measures, or, for a kind that declares none, every result it
    recorded."""
    declared = kinds.info(kind).headline() if kind in kinds.names() else ()
    if declared:
        present = set(scenario_samples.metric)
        return tuple(Measure.of(m) for m in declared if m.name in present)
    found = []
    results = scenario_samples[~normalize.is_host_reading(scenario_samples)]
    for metric, group in results.groupby("metric", sort=False):
        found.append(Measure(str(metric), str(metric), str(group.unit.iloc[0])))
    return tuple(found)


def tables(samples: pd.DataFrame, reference: Mapping[str, str] | None = None,
           seed: int = methodology.BOOTSTRAP_SEED) -> list[Table]:
    """The headline tables of every scenario (one per family present), in scenario order."""
    reference = dict(reference or {})
    if samples.empty:
        return []
    # density: steps and teardowns up to the count every ramp of the family reached
    samples = with_derived(matched.common_range(samples.assign(
        variant=samples.variant.map(normalize.plain),
        accel=samples.accel.map(normalize.plain))))
    families = samples.backend.astype(str).map(registry.family)
    found = []
    runs = tuple(dict.fromkeys(samples.run_id.astype(str)))
    for (scenario, kind), data in samples.groupby(["scenario", "kind"], sort=False):
        measures = measures_of(str(kind), data)
        for family in registry.FAMILIES:
            members = data[families.loc[data.index] == family]
            if members.empty or not measures:
                continue
            floor = registry.floors().get(family, "")
            accel = ", ".join(sorted(set(members.accel) - {"", "none"}))
            table = Table(str(scenario), str(kind), family, floor, reference.get(family),
                          accel, runs)
            table.rows = _rows(members, matched.noted(measures, members), floor,
                               reference.get(family), seed, RESTORE_ANCHORS.get(family))
            if table.rows:
                found.append(table)
    return found


def _rows(members: pd.DataFrame, measures: tuple[Measure, ...], floor: str,
          reference: str | None, seed: int,
          anchor: tuple[str, str] | None = None) -> list[Row]:
    groups = {key: group.value.to_numpy(float) for key, group in members.groupby(
        ["metric", "run_id", "backend", "variant"], sort=False)}
    runs = {run: index for index, run in enumerate(dict.fromkeys(key[1] for key in groups))}
    rows = []
    for measure in measures:  # backends of one rank (labelled ones) as the samples have them
        keys = sorted((key for key in groups if key[0] == measure.metric),
                      key=lambda k: (_variant_rank(k[3]), runs[k[1]], registry.rank(str(k[2]))))
        for metric, run, backend, variant in keys:
            values = groups[(metric, run, backend, variant)]
            rows.append(Row(
                measure, str(run), str(backend), str(variant), len(values),
                float(np.median(values)), float(np.percentile(values, 95)),
                _ratio_to(measure, values, backend, floor, variant, groups, run, "floor", seed),
                _ratio_to(measure, values, backend, reference, variant, groups, run,
                          "reference", seed) if reference else None,
                _anchor_ratio(measure, values, str(backend), anchor, groups, run, seed)
                if variant == RESTORE and anchor is not None else None,
            ))
    return rows


def _anchor_ratio(measure: Measure, values: np.ndarray, backend: str, anchor: tuple[str, str],
                  groups: Mapping[tuple[Any, ...], np.ndarray], run: Any, seed: int
                  ) -> Ratio | None:
    """A restore row's ratio to its anchor (:data:`RESTORE_ANCHORS`) of the same run."""
    if not measure.ratio:
        return None
    other = anchor[0] or backend
    other_values = groups.get((measure.metric, run, other, anchor[1]))
    if other_values is None or not len(other_values):
        return Ratio(math.nan, note=f"no {other} {anchor[1]} in this run")
    return ratio_of_medians(values, other_values, seed, other)


def _variant_rank(variant: str) -> tuple[int, str]:
    return (VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER),
            variant)


def _ratio_to(measure: Measure, values: np.ndarray, backend: str, other: str | None,
              variant: str, groups: Mapping[tuple[Any, ...], np.ndarray], run: Any, role: str,
              seed: int) -> Ratio | None:
    """The ratio of ``values`` to ``other``'s samples of the same metric, run and variant."""
    if not measure.ratio or other is None:
        return None
    if backend == other:
        return Ratio(1.0, note=role)
    other_values = groups.get((measure.metric, run, other, variant))
    if other_values is None or not len(other_values):
        if any(key[:3] == (measure.metric, run, other) for key in groups):
            why = f"no {other} {variant or 'of this variant'}"
        elif any(key[1:3] == (run, other) for key in groups):
            why = f"{other} has no {measure.label}"
        else:
            why = f"no {other} in this run"
        return Ratio(math.nan, note=why)
    return ratio_of_medians(values, other_values, seed, other)


def ratio_of_medians(values: Any, base: Any, seed: int = methodology.BOOTSTRAP_SEED,
                     base_name: str = "base") -> Ratio:
    """median(values) / median(base), with a seeded percentile-bootstrap confidence interval
    (both samples resampled independently) when each side has :data:`MIN_CI_SAMPLES`."""
    values, base = np.asarray(values, float), np.asarray(base, float)
    top, bottom = float(np.median(values)), float(np.median(base))
    if not bottom > 0:
        return Ratio(math.nan, note=f"{base_name} median ≤ 0 (noise)")
    if not top > 0:
        return Ratio(math.nan, note="median ≤ 0 (noise)")
    value = top / bottom
    if len(values) < MIN_CI_SAMPLES or len(base) < MIN_CI_SAMPLES:
        return Ratio(value, note="no CI")
    if np.ptp(values) == 0 and np.ptp(base) == 0:
        return Ratio(value, value, value)
    from scipy.stats import bootstrap

    def statistic(top: np.ndarray, bottom: np.ndarray, axis: int) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.median(top, axis=axis) / np.median(bottom, axis=axis)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bootstrap((values, base), statistic, vectorized=True, paired=False,
                           n_resamples=methodology.BOOTSTRAP_RESAMPLES,
                           confidence_level=methodology.CONFIDENCE, method="percentile",
                           **_rng(seed))
    low, high = result.confidence_interval
    return Ratio(value, float(low), float(high))


def _rng(seed: int) -> dict[str, Any]:
    """scipy's seed keyword: ``rng`` from 1.15 on, ``random_state`` before."""
    import inspect

    from scipy.stats import bootstrap

    keyword = "rng" if "rng" in inspect.signature(bootstrap).parameters else "random_state"
    return {keyword: np.random.default_rng(seed)}
