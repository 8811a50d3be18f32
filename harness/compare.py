"""Baseline vs candidate: a metric regresses only if significantly *and* materially worse.

For every scenario, backend, variant and metric present in both runs, the two distributions
(one value per repetition or per instance) are compared with a two-sided Mann-Whitney U test.
A metric is a **regression** when p < alpha *and* the candidate's median is worse than the
baseline's by more than the metric's threshold (default 10%, per metric in a TOML file).
Single values (``teardown_s``, ``max_instances_alive``, ...) cannot be significant: they are
shown as ``n/a (single value)`` and never flagged. Readings of the host's state (``host_*``,
``ksm_*``, ``instances_alive``: density curve points and counters) are left out, as are
metrics with no better/worse direction.

Runs are compared only with like: accel, network, guest memory and image digest must match
for every compared metric (an image change can be allowed explicitly). With ``normalized``,
the runs' ratios to their own ``process`` floor are compared instead of absolute figures, so a
baseline from one machine can gate a run on another of the same kind.

Thresholds file (TOML)::

    default = 0.10
    [metrics]
    start_to_ready_s_vs_process = 0.25
    "libvirt.start_to_ready_s" = 0.20     # backend.metric beats metric beats default
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import baseline, normalize, results
from harness.backends import registry
from hostkit.files import atomic_write

LOWER_IS_BETTER = "lower"
HIGHER_IS_BETTER = "higher"
# The one place that says which way is worse. Exact names first, then suffixes. None: not
# gated (the phases of a start say where its time went; the start itself is gated).
DIRECTIONS: Mapping[str, str | None] = {
    "max_instances_alive": HIGHER_IS_BETTER,
    "start_call_s": None, "ready_wait_s": None, "createxml_s": None,
}
SUFFIX_DIRECTIONS: tuple[tuple[str, str], ...] = (
    ("_s", LOWER_IS_BETTER),  # latencies
    ("_bytes", LOWER_IS_BETTER),  # memory
)
KEY = ("scenario", "kind", "backend", "variant", "metric")
MUST_MATCH = ("accel", "network", "guest_memory_mib", "image_digest")
DEFAULT_THRESHOLD = 0.10
DEFAULT_ALPHA = 0.05

REGRESSION = "regression"
IMPROVEMENT = "improvement"
OK = "ok"
WITHIN_THRESHOLD = "ok (within threshold)"
NOT_SIGNIFICANT = "ok (not significant)"
SINGLE_VALUE = "n/a (single value)"
NO_RATIO = "n/a (median <= 0)"
MISSING_IN_CANDIDATE = "missing in candidate"
NEW_IN_CANDIDATE = "new in candidate"


class CompareError(ValueError):
    """The runs cannot be compared (bad input); the message says why."""


def direction(metric: str) -> str | None:
    """``lower`` or ``higher`` (is better) for a metric or its ``_vs_process`` ratio; else None."""
    name = normalize.base_metric(metric)
    if name in DIRECTIONS:
        return DIRECTIONS[name]
    for suffix, way in SUFFIX_DIRECTIONS:
        if name.endswith(suffix):
            return way
    return None


@dataclass(frozen=True)
class Thresholds:
    """Relative thresholds: ``backend.metric``, then ``metric``, then ``default``.

    A ``*_vs_process`` metric without an entry of its own falls back to its raw metric's entry.
    ``across_kinds`` (the file's ``[across_kinds]`` table) applies when the baseline was made
    on another machine kind (CPU model): its figures are the differences seen between kinds.
    """

    default: float = DEFAULT_THRESHOLD
    metrics: Mapping[str, float] = field(default_factory=dict)
    across_kinds: Thresholds | None = None

    def for_kinds(self, same_kind: bool) -> Thresholds:
        """These thresholds, or those across machine kinds when the kinds differ."""
        return self if same_kind or self.across_kinds is None else self.across_kinds

    def lookup(self, backend: str, metric: str) -> float:
        names = [metric]
        if metric != normalize.base_metric(metric):
            names.append(normalize.base_metric(metric))
        for name in names:
            for key in (f"{backend}.{name}", name):
                if key in self.metrics:
                    return self.metrics[key]
        return self.default

    @classmethod
    def load(cls, path: Path | str) -> Thresholds:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as error:
            raise CompareError(f"{path}: cannot read thresholds: {error}") from None
        except tomllib.TOMLDecodeError as error:
            raise CompareError(f"{path}: not valid TOML: {error}") from None
        unknown = set(data) - {"default", "metrics", "across_kinds"}
        if unknown:
            raise CompareError(
                f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                "expected 'default', a [metrics] table and an [across_kinds] table"
            )
        across = data.get("across_kinds")
        if across is not None and not isinstance(across, dict):
            raise CompareError(f"{path}: 'across_kinds' must be a table")
        return cls._from_table(path, data, "",
                               cls._from_table(path, across, "across_kinds.") if across
                               else None)

    @classmethod
    def _from_table(cls, path: Path, data: dict[str, Any], where: str,
                    across_kinds: Thresholds | None = None) -> Thresholds:
        unknown = set(data) - {"default", "metrics", "across_kinds"}
        if where and unknown:
            raise CompareError(f"{path}: unknown key(s) "
                               f"{', '.join(sorted(where + k for k in unknown))}")
        default = _threshold(path, f"{where}default", data.get("default", DEFAULT_THRESHOLD))
        table = data.get("metrics", {})
        if not isinstance(table, dict):
            raise CompareError(f"{path}: '{where}metrics' must be a table of metric = fraction")
        metrics = {key: _threshold(path, f"{where}metrics.{key}", value)
                   for key, value in _flatten(table).items()}
        return cls(default=default, metrics=metrics, across_kinds=across_kinds)


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"ours": {"start_to_ready_s": 0.2}}`` (unquoted dotted key) -> ``ours.start_to_ready_s``.
    """
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def _threshold(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise CompareError(
            f"{path}: {key} = {value!r}: expected a non-negative fraction such as 0.10"
        )
    return float(value)


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
    ratio: float  # candidate median / baseline median
    p_value: float  # NaN when not tested
    threshold: float
    verdict: str

    @property
    def regression(self) -> bool:
        return self.verdict == REGRESSION


@dataclass
class Comparison:
    """The outcome of comparing two runs."""

    baseline: str
    candidate: str
    normalized: bool
    alpha: float
    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.regression]

    @property
    def improvements(self) -> list[Row]:
        return [row for row in self.rows if row.verdict == IMPROVEMENT]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


def _prepare(samples):
    """Only rated outcomes (no host readings), with empty dimensions as ''."""
    frame = samples[~normalize.is_host_reading(samples)].copy()
    frame = frame[frame.metric.map(direction).notna()]
    for column in (*KEY, *MUST_MATCH):
        frame[column] = frame[column].map(normalize.plain)
    return frame


def _check_dimensions(base, cand, allow_image_change: bool) -> list[str]:
    """Raise CompareError on mismatched dimensions; return notes about allowed differences."""
    problems: dict[tuple[str, str, str], str] = {}
    notes: dict[tuple[str, str, str], str] = {}
    base_dims = base.groupby(list(KEY), sort=False)
    cand_groups = dict(tuple(cand.groupby(list(KEY), sort=False)))
    for key, base_group in base_dims:
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


def _p_value(base_values, cand_values) -> float:
    from scipy.stats import mannwhitneyu

    result = mannwhitneyu(base_values, cand_values, alternative="two-sided")
    p_value = float(result.pvalue)
    return 1.0 if math.isnan(p_value) else p_value


def _ratio(base_median: float, cand_median: float) -> float:
    if base_median > 0 and cand_median >= 0:
        return cand_median / base_median
    if base_median == 0 and cand_median == 0:
        return 1.0
    return math.nan


def _verdict(metric: str, n_base: int, n_cand: int, ratio: float, p_value: float,
             threshold: float, alpha: float) -> str:
    if n_base < 2 or n_cand < 2:
        return SINGLE_VALUE
    if math.isnan(ratio):
        return NO_RATIO
    if direction(metric) == HIGHER_IS_BETTER:
        worse_by = math.inf if ratio == 0 else 1 / ratio - 1
    else:
        worse_by = ratio - 1
    significant = p_value < alpha
    beyond = abs(worse_by) > threshold
    if significant and beyond:
        return REGRESSION if worse_by > 0 else IMPROVEMENT
    if significant:
        return WITHIN_THRESHOLD
    if beyond:
        return NOT_SIGNIFICANT
    return OK


def compare_samples(base, cand, thresholds: Thresholds | None = None,
                    alpha: float = DEFAULT_ALPHA,
                    allow_image_change: bool = False) -> tuple[list[Row], list[str]]:
    """Rows for every rated metric of two sample frames, and notes; CompareError if unlike."""
    thresholds = thresholds or Thresholds()
    base, cand = _prepare(base), _prepare(cand)
    notes = _check_dimensions(base, cand, allow_image_change)
    base_groups = dict(tuple(base.groupby(list(KEY), sort=False)))
    cand_groups = dict(tuple(cand.groupby(list(KEY), sort=False)))
    if not set(base_groups) & set(cand_groups):
        raise CompareError("the runs have no metric in common (different scenarios or backends?)")
    rows = []
    for key in [*base_groups, *(k for k in cand_groups if k not in base_groups)]:
        scenario, _, backend, variant, metric = key
        old, new = base_groups.get(key), cand_groups.get(key)
        threshold = thresholds.lookup(backend, metric)
        unit = str((old if old is not None else new).unit.iloc[0])
        base_values = old.value.to_numpy(dtype=float) if old is not None else []
        cand_values = new.value.to_numpy(dtype=float) if new is not None else []
        base_median = float(_median(base_values))
        cand_median = float(_median(cand_values))
        ratio, p_value = _ratio(base_median, cand_median), math.nan
        if old is None or new is None:
            verdict = NEW_IN_CANDIDATE if old is None else MISSING_IN_CANDIDATE
            ratio = math.nan
        else:
            if len(base_values) >= 2 and len(cand_values) >= 2:
                p_value = _p_value(base_values, cand_values)
            verdict = _verdict(metric, len(base_values), len(cand_values), ratio, p_value,
                               threshold, alpha)
        rows.append(Row(scenario, backend, variant, metric, unit, len(base_values),
                        len(cand_values), base_median, cand_median, ratio, p_value, threshold,
                        verdict))
    return _ordered(rows), notes


def _ordered(rows: list[Row]) -> list[Row]:
    """Grouped by scenario (first appearance), backend (floor first), variant."""
    scenarios = list(dict.fromkeys(row.scenario for row in rows))
    backends = list(dict.fromkeys([*registry.names(), *(row.backend for row in rows)]))
    return sorted(rows, key=lambda row: (scenarios.index(row.scenario),
                                         backends.index(row.backend), row.variant))


def _median(values) -> float:
    import numpy as np

    return float(np.median(values)) if len(values) else math.nan


def _load(run_dir: Path, normalized: bool):
    if not (run_dir / "samples.csv").is_file():
        raise CompareError(f"{run_dir}: no samples.csv (the run recorded nothing)")
    frame = normalize.load_normalized(run_dir) if normalized else results.load_samples(run_dir)
    if frame.empty:
        what = "normalized samples (does the run include the process backend?)" if normalized \
            else "samples"
        raise CompareError(f"{run_dir}: no {what}")
    return frame


def _run_notes(base_dir: Path, cand_dir: Path, normalized: bool) -> list[str]:
    notes = []
    base_meta, cand_meta = results.read_metadata(base_dir), results.read_metadata(cand_dir)
    for name, meta in (("baseline", base_meta), ("candidate", cand_meta)):
        if meta.get("status") != "complete":
            notes.append(f"{name} run is {meta.get('status', 'of unknown status')}")
    hosts = [meta.get("host", {}) for meta in (base_meta, cand_meta)]
    facts = ("hostname", "cpus", "cpu_model", "kernel")
    if not normalized and any(hosts[0].get(f) != hosts[1].get(f) for f in facts):
        notes.append("the runs come from different hosts "
                     f"({hosts[0].get('hostname')} / {hosts[1].get('hostname')}): absolute "
                     "figures may not be comparable; consider --normalized")
    return notes


def compare_runs(base_dir: Path, cand_dir: Path, thresholds: Thresholds | None = None,
                 alpha: float = DEFAULT_ALPHA, normalized: bool = False,
                 allow_image_change: bool = False) -> Comparison:
    """Compare two run directories (their samples, or their ratios to the family floors).

    ``base_dir`` may also be a directory of baselines per machine kind
    (:mod:`harness.baseline`): the candidate's kind is taken, else the newest at the
    thresholds across kinds. Runs of different machine kinds are always judged at those.
    """
    if not 0 < alpha < 1:
        raise CompareError(f"alpha must be between 0 and 1, not {alpha}")
    base_dir, cand_dir = Path(base_dir), Path(cand_dir)
    candidate_kind = baseline.kind_of(cand_dir)
    kind_notes = []
    if not baseline.is_run(base_dir):
        choice = baseline.choose(base_dir, candidate_kind)
        base_dir = choice.directory
        kind_notes = [note] if (note := choice.note(candidate_kind)) else []
    same_kind = baseline.kind_of(base_dir) == candidate_kind
    if not same_kind and not kind_notes:
        kind_notes = [f"the runs come from different machine kinds ({baseline.kind_of(base_dir)}"
                      f" / {candidate_kind}): judged at the thresholds across kinds"]
    thresholds = (thresholds or Thresholds()).for_kinds(same_kind)
    rows, notes = compare_samples(_load(base_dir, normalized), _load(cand_dir, normalized),
                                  thresholds, alpha, allow_image_change)
    notes = kind_notes + notes
    missing = [row for row in rows if row.verdict == MISSING_IN_CANDIDATE]
    if missing:
        names = ", ".join(sorted({f"{row.scenario}/{row.backend}" for row in missing}))
        why = " (or have no positive process floor there)" if normalized else ""
        notes.append(f"{len(missing)} metric(s) of the baseline are missing in the candidate"
                     f"{why} ({names}); they are not gated")
    return Comparison(baseline=base_dir.name, candidate=cand_dir.name, normalized=normalized,
                      alpha=alpha, rows=rows,
                      notes=_run_notes(base_dir, cand_dir, normalized) + notes)


# ---------------------------------------------------------------- output


def fmt_value(value: float, unit: str) -> str:
    """A median in a readable unit: ms for seconds, MiB for bytes."""
    if math.isnan(value):
        return "-"
    if unit == "s":
        return f"{value:.3g} s" if abs(value) >= 1 else f"{value * 1000:.3g} ms"
    if unit == "bytes":
        return f"{value / (1024 * 1024):.3g} MiB"
    if unit == "ratio":
        return f"{value:.3g}×"
    return f"{value:.4g} {unit}".rstrip()


def fmt_ratio(ratio: float) -> str:
    return "-" if math.isnan(ratio) else f"{ratio:.3f} ({(ratio - 1) * 100:+.1f}%)"


def fmt_p(p_value: float) -> str:
    if math.isnan(p_value):
        return "-"
    return f"{p_value:.2e}" if p_value < 0.001 else f"{p_value:.3f}"


HEADERS = ("scenario", "backend", "metric", "n", "baseline", "candidate", "ratio", "p",
           "threshold", "verdict")


def _cells(row: Row) -> tuple[str, ...]:
    metric = f"{row.metric} [{row.variant}]" if row.variant else row.metric
    return (row.scenario, row.backend, metric, f"{row.n_base}/{row.n_cand}",
            fmt_value(row.base_median, row.unit), fmt_value(row.cand_median, row.unit),
            fmt_ratio(row.ratio), fmt_p(row.p_value), f"{row.threshold:.0%}", row.verdict)


def summary(comparison: Comparison) -> str:
    tested = sum(1 for row in comparison.rows if not math.isnan(row.p_value))
    return (f"{len(comparison.regressions)} regression(s), "
            f"{len(comparison.improvements)} improvement(s), {tested} metric(s) tested "
            f"(Mann-Whitney U, alpha {comparison.alpha:g}), {len(comparison.rows)} shown")


def _title(comparison: Comparison) -> str:
    mode = "ratios to the process floor" if comparison.normalized else "absolute figures"
    return f"cvbench compare: {comparison.baseline} → {comparison.candidate} ({mode})"


def to_markdown(comparison: Comparison) -> str:
    """The comparison as Markdown (for a CI job summary)."""
    lines = [f"### {_title(comparison)}", "", f"**{summary(comparison)}**", ""]
    lines += [f"> {note}" for note in comparison.notes]
    if comparison.notes:
        lines.append("")
    lines.append("| " + " | ".join(HEADERS) + " |")
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for row in comparison.rows:
        cells = list(_cells(row))
        if row.regression:
            cells[-1] = f"**{REGRESSION}**"
        cells = [cell.replace("|", "\\|") for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_STYLES = {REGRESSION: "bold red", IMPROVEMENT: "green", SINGLE_VALUE: "dim", NO_RATIO: "dim",
           MISSING_IN_CANDIDATE: "yellow", NEW_IN_CANDIDATE: "yellow"}


def render(comparison: Comparison, console=None) -> None:
    """Print the comparison as a terminal table (rich)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)
    table = Table(title=_title(comparison))
    for header in HEADERS:
        table.add_column(header, justify="right" if header in ("n", "baseline", "candidate",
                                                               "ratio", "p", "threshold")
                         else "left")
    for row in comparison.rows:
        table.add_row(*(Text(cell) for cell in _cells(row)), style=_STYLES.get(row.verdict))
    console.print(table)
    for note in comparison.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    colour = "red" if comparison.regressions else "green"
    console.print(f"[{colour}]{summary(comparison)}[/{colour}]", highlight=False)


# ---------------------------------------------------------------- command line


def register(subparsers, common) -> None:
    """Add ``cvbench compare`` to the CLI."""
    parser = subparsers.add_parser(
        "compare", parents=[common],
        help="gate a candidate run against a baseline (exit 1 on a regression)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("baseline", help="baseline run directory or run id")
    parser.add_argument("candidate", help="candidate run directory or run id")
    parser.add_argument("--normalized", action="store_true",
                        help="compare ratios to each run's own process floor")
    parser.add_argument("--thresholds", metavar="FILE",
                        help="TOML: default = 0.10 and a [metrics] table")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help=f"significance level (default {DEFAULT_ALPHA})")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    parser.add_argument("--allow-image-change", action="store_true",
                        help="compare runs made with different image digests")
    parser.set_defaults(func=handle)


def handle(args) -> int:
    from harness.cli import UsageError

    results_dir = Path(args.results_dir)
    try:
        base_dir = (Path(args.baseline) if baseline.baselines(Path(args.baseline))
                    else results.resolve_run(args.baseline, results_dir))
        cand_dir = results.resolve_run(args.candidate, results_dir)
        thresholds = Thresholds.load(args.thresholds) if args.thresholds else Thresholds()
        comparison = compare_runs(base_dir, cand_dir, thresholds, args.alpha,
                                  normalized=args.normalized,
                                  allow_image_change=args.allow_image_change)
    except (results.ResultsError, CompareError) as error:
        raise UsageError(str(error)) from None
    render(comparison)
    markdown = to_markdown(comparison)
    if args.markdown:
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, markdown)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as handle:
            handle.write(markdown)
    return comparison.exit_code
