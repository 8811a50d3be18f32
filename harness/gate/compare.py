"""Two run directories → a :class:`Comparison`: the baseline chosen, loaded and judged.

With ``normalized``, the runs' ratios to their own family floor (``normalized.csv``) are
compared instead of absolute figures, so a baseline from one machine can gate a run on
another of the same kind. A directory of baselines per machine kind
(:mod:`harness.baseline`) may stand for the baseline: the candidate's kind is taken, else
the newest, at the thresholds across kinds.

Some things fail the gate whatever the statistics say (:attr:`Comparison.faults`, one line
each): a scenario, backend or variant of the baseline that the candidate lacks, a candidate run
that is not complete, and every failure the candidate recorded. A benchmark that stopped
measuring something is broken, not faster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import baseline, normalize, results
from harness.gate import verdicts
from harness.gate.errors import CompareError
from harness.gate.stats import DEFAULT_ALPHA, Row, compare_samples
from harness.gate.thresholds import Thresholds
from hostkit import validate

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass
class Comparison:
    """The outcome of comparing two runs."""

    baseline: str
    candidate: str
    normalized: bool
    alpha: float
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    baseline_dir: Path | None = None  # the baseline run itself (of its kind, when chosen)
    candidate_dir: Path | None = None
    faults: list[str] = field(default_factory=list)  # each fails the gate (module docstring)

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.regression]

    @property
    def improvements(self) -> list[Row]:
        return [row for row in self.rows if row.verdict == verdicts.IMPROVEMENT]

    @property
    def failed(self) -> bool:
        return bool(self.regressions or self.faults)

    @property
    def exit_code(self) -> int:
        """1 when anything regressed or a fault was found, else 0 (the gate's exit code)."""
        return 1 if self.failed else 0


def compare_runs(base_dir: Path, cand_dir: Path, thresholds: Thresholds | None = None,
                 alpha: float = DEFAULT_ALPHA, normalized: bool = False,
                 allow_image_change: bool = False) -> Comparison:
    """Compare two run directories (their samples, or their ratios to the family floors).

    ``base_dir`` may also be a directory of baselines per machine kind: see the module's
    docstring. Runs of different machine kinds are always judged at the thresholds across
    kinds. CompareError (or ResultsError for a missing run) when they cannot be compared.
    """
    try:
        validate.ALPHA.check(alpha)
    except validate.Invalid as error:
        raise CompareError(f"alpha: {error}") from None
    base_dir, cand_dir = Path(base_dir), Path(cand_dir)
    candidate_kind = baseline.kind_of(cand_dir)
    kind_notes = []
    if not baseline.is_run(base_dir):
        choice = baseline.choose(base_dir, candidate_kind)
        base_dir = choice.directory
        kind_notes = [note] if (note := choice.note(candidate_kind)) else []
    base_kind = baseline.kind_of(base_dir)
    same_kind = base_kind == candidate_kind
    if not same_kind and not kind_notes:
        kind_notes = [f"the runs come from different machine kinds ({base_kind}"
                      f" / {candidate_kind}): judged at the thresholds across kinds"]
    thresholds = (thresholds or Thresholds()).for_kinds(same_kind)
    log.info("comparing %s (%s) → %s (%s), %s, alpha %g, thresholds %s", base_dir, base_kind,
             cand_dir, candidate_kind, "normalized" if normalized else "absolute", alpha,
             "of the same kind" if same_kind else "across kinds")
    base_frame, cand_frame = load_run(base_dir, normalized), load_run(cand_dir, normalized)
    rows, notes = compare_samples(base_frame, cand_frame, thresholds, alpha, allow_image_change)
    notes = kind_notes + notes
    missing = [row for row in rows if row.verdict == verdicts.MISSING_IN_CANDIDATE]
    if missing:
        names = ", ".join(sorted({f"{row.scenario}/{row.backend}" for row in missing}))
        why = " (or have no positive process floor there)" if normalized else ""
        notes.append(f"{len(missing)} metric(s) of the baseline are missing in the candidate"
                     f"{why} ({names}); they are not gated")
    return Comparison(baseline=base_dir.name, candidate=cand_dir.name, normalized=normalized,
                      alpha=alpha, rows=rows,
                      notes=_run_notes(base_dir, cand_dir, normalized) + notes,
                      baseline_dir=base_dir, candidate_dir=cand_dir,
                      faults=absent(base_frame, cand_frame)
                      + run_faults(results.read_metadata(cand_dir)))


def absent(base: pd.DataFrame, cand: pd.DataFrame) -> list[str]:
    """One line for each scenario, backend (of a scenario) and variant (of a backend) of the
    baseline that the candidate has no sample of; the widest level that is absent says it."""
    levels = ["scenario", "backend", "variant"]

    def keys(frame: pd.DataFrame) -> set[tuple[str, ...]]:
        table = frame[levels].astype(object).fillna("").astype(str).drop_duplicates()
        return {tuple(key) for key in table.itertuples(index=False)}

    have = keys(cand)
    have_parts = {key[:depth] for key in have for depth in (1, 2)}
    lines, said = [], set()
    for key in sorted(keys(base) - have):
        depth = next(depth for depth in (1, 2, 3)
                     if depth == 3 or key[:depth] not in have_parts)
        part = key[:depth]
        if part in said:
            continue
        said.add(part)
        name = "/".join(part[:2]) + (f" [{part[2]}]" if depth == 3 else "")
        lines.append(f"{levels[depth - 1]} {name} of the baseline is absent from the candidate")
    return lines


def run_faults(metadata: dict[str, Any]) -> list[str]:
    """The candidate run's own faults: not complete, and every failure it recorded."""
    lines = []
    status = metadata.get("status", "of unknown status")
    if status != "complete":
        error = f" ({metadata['error']})" if metadata.get("error") else ""
        lines.append(f"the candidate run is {status}{error}")
    return lines + [f"the candidate recorded a failure: {line}"
                    for line in results.failure_lines(metadata)]


def load_run(run_dir: Path, normalized: bool) -> pd.DataFrame:
    """A run's samples (or, ``normalized``, its ratios to the floors); CompareError if none."""
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
    if base_meta.get("status") != "complete":  # the candidate's own: a fault (run_faults)
        notes.append(f"baseline run is {base_meta.get('status', 'of unknown status')}")
    hosts = [meta.get("host", {}) for meta in (base_meta, cand_meta)]
    facts = ("hostname", "cpus", "cpu_model", "kernel")
    if not normalized and any(hosts[0].get(f) != hosts[1].get(f) for f in facts):
        notes.append("the runs come from different hosts "
                     f"({hosts[0].get('hostname')} / {hosts[1].get('hostname')}): absolute "
                     "figures may not be comparable; consider --normalized")
    return notes
