"""The gate's verdict: the candidate against the baseline's own code, run on this machine.

The gate screens a candidate against the committed baseline (:mod:`harness.gate.compare`):
the record, made on another machine or another day. The screen's faults (something of the
baseline absent, the candidate incomplete or with failures: :attr:`Comparison.faults`) fail
the gate as they are. Its regressions do not decide; a same-machine A/B does: the quick suite
is run with the code of the baseline's commit here (:mod:`harness.gate.reference`), right
after the candidate's own run, and the two are compared in absolute figures *and* in ratios
to the family floors (a *pair*). Absolute figures from one machine within minutes of each
other catch what ratios cannot: a change of the harness's own code that slows every backend,
the floors included. A pair that finds a regression is followed by a second pair, the
baseline's code first this time (B A A B, so a host that drifts favours neither), and a metric
fails the gate only when it regressed in both: one disturbed run cannot fail the gate alone
(a reference run whose floor alone is slow turns every ratio to it into a "regression"; what
the pairs found and cleared on this machine is in docs/gate-power.md). Within a pair, a ratio
regression whose backend's own absolute figure did not regress while the floor's got better
is the floor's move (:attr:`Pair.floor_moves`), said as such and not counted.

A floor that moved against the committed baseline but not against the baseline's code here
moved by itself (the machine): the gate says so, and the ratios already divide it out. When
the baseline's code cannot be run here (a shallow clone without the commit, a run that
fails), the screen's regressions stand and the gate says why.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.backends import registry
from harness.gate import reference, verdicts
from harness.gate.compare import Comparison, compare_runs
from harness.gate.errors import CompareError
from harness.gate.stats import Row
from harness.gate.thresholds import Thresholds
from harness.normalize import base_metric

log = logging.getLogger(__name__)

PAIRS = 2  # at most: a second pair only for what the first one found
MOVED = (verdicts.REGRESSION, verdicts.IMPROVEMENT)


def row_key(row: Row) -> tuple[str, str, str, str]:
    return (row.scenario, row.backend, row.variant, row.metric)


def row_name(row: Row) -> str:
    name = f"{row.scenario}/{row.backend}.{row.metric}"
    return f"{name} [{row.variant}]" if row.variant else name


def _change(row: Row) -> str:
    """The move of a row's median, as a signed percentage."""
    return f"{(row.ratio - 1) * 100:+.0f}%"


@dataclass
class Pair:
    """The baseline's code (A) and the candidate's (B) run here one after the other, compared
    in ratios to the floors and in absolute figures."""

    ratios: Comparison
    absolute: Comparison
    order: str  # "B A" or "A B": which ran first
    seconds: float  # the runs this pair made took this long
    why: str  # why this pair ran

    @property
    def rows(self) -> list[Row]:
        return self.ratios.rows + self.absolute.rows

    @property
    def regressions(self) -> list[Row]:
        """The absolute regressions, and the ratio regressions but the floor's own moves
        (:meth:`floor_moves`)."""
        moved = {row_key(row) for row, _ in self.floor_moves}
        return ([row for row in self.ratios.regressions if row_key(row) not in moved]
                + self.absolute.regressions)

    @functools.cached_property
    def floor_moves(self) -> list[tuple[Row, Row]]:
        """Ratio regressions that are the floor's move, not the backend's, each with the
        floor's absolute row: in this pair the backend's own figure did not regress, and the
        floor's own figure got better. A ratio divides every sample by the floor's median
        (:mod:`harness.normalize`) as if that median were exact; a floor figure near the
        clock's resolution (qemu's cleanup, ~0.5 ms) moves its median by a fifth between two
        runs, and every ratio to it with it. On one machine, minutes apart, the absolute
        figures say which side moved."""
        absolute = {row_key(row): row for row in self.absolute.rows}
        found = []
        for row in self.ratios.regressions:
            raw = base_metric(row.metric)
            own = absolute.get((row.scenario, row.backend, row.variant, raw))
            floor = _floor_row(absolute, row, raw)
            if own is None or floor is None or own.regression or math.isnan(floor.ratio):
                continue
            if verdicts.worse_by(raw, floor.ratio) < 0:  # the floor got better
                found.append((row, floor))
        return found

    @property
    def baseline(self) -> str:
        return self.ratios.baseline

    @property
    def candidate(self) -> str:
        return self.ratios.candidate


@dataclass(frozen=True)
class MetricVerdict:
    """One metric's line on the verdict page: its rule, sizes, changes and why."""

    name: str  # scenario/backend.metric [variant]
    form: str  # "ratio" (to the family floor) or "absolute"
    rule: str
    threshold: float
    sizes: str  # n baseline/candidate in each pair
    committed: str  # the change against the committed baseline ("-" when not compared)
    changes: tuple[str, ...]  # the change in each pair
    failed: bool
    why: str


@dataclass
class Confirmation:
    """The screen against the committed baseline and the same-machine pairs (in order)."""

    screen: Comparison
    commit: str | None = None  # the baseline's commit, when it was run here
    pairs: list[Pair] = field(default_factory=list)
    unconfirmed_because: str | None = None  # why the baseline's code could not be run here
    seconds: float = 0.0  # the pairs' runs took this long in all
    floor_notes: list[str] = field(default_factory=list)  # floors that moved by themselves

    @property
    def against_reference(self) -> Comparison | None:
        """The first pair's comparison in ratios; None when no pair ran."""
        return self.pairs[0].ratios if self.pairs else None

    @property
    def confirmed(self) -> list[Row]:
        """The regressions that fail the gate: found in every pair (the first pair's rows);
        the screen's when no pair could run."""
        if not self.pairs:
            return self.screen.regressions
        kept = self.pairs[0].regressions
        for pair in self.pairs[1:]:
            again = {row_key(row) for row in pair.regressions}
            kept = [row for row in kept if row_key(row) in again]
        return kept

    @property
    def cleared(self) -> list[Row]:
        """Regressions of the screen or of the first pair that do not fail the gate."""
        kept = {row_key(row) for row in self.confirmed}
        seen: dict[tuple[str, str, str, str], Row] = {}
        for row in self.screen.regressions + (self.pairs[0].regressions if self.pairs else []):
            if row_key(row) not in kept:
                seen.setdefault(row_key(row), row)
        return list(seen.values())

    @property
    def failed(self) -> bool:
        return bool(self.confirmed or self.screen.faults)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def metric_verdicts(self) -> list[MetricVerdict]:
        """Every metric the first pair judged (the screen's when no pair ran), with why."""
        confirmed = {row_key(row) for row in self.confirmed}
        screen = {row_key(row): row for row in self.screen.rows}
        pair_rows = [{row_key(row): row for row in pair.rows} for pair in self.pairs]
        floor_moved = {row_key(row) for pair in self.pairs for row, _ in pair.floor_moves}
        lines = []
        for row in (self.pairs[0].rows if self.pairs else self.screen.rows):
            key = row_key(row)
            seen = [rows[key] for rows in pair_rows if key in rows]
            against_record = screen.get(key)
            if key in confirmed:
                why = ("worse beyond the threshold in every pair"
                       + (", and significant (rank)" if row.rule == verdicts.RANK else "")
                       if self.pairs else "regressed against the committed baseline; "
                       "no pair could run here")
            elif key in floor_moved:
                why = ("worse as a ratio only where the floor's own figure got better and "
                       "this backend's did not regress: the floor's move")
            elif seen and any(other.regression for other in seen):
                why = "regressed in pair 1 only: not again in pair 2 (the machine)"
            elif against_record is not None and against_record.regression:
                why = ("regressed against the committed baseline only, not against the "
                       "baseline's code here (the machine)")
            elif len({other.verdict for other in seen}) > 1:
                why = "; ".join(f"pair {number}: {other.verdict}"
                                for number, other in enumerate(seen, 1))
            else:
                why = (seen[0] if seen else row).verdict
            lines.append(MetricVerdict(
                name=row_name(row),
                form="ratio" if row.metric != base_metric(row.metric) else "absolute",
                rule=row.rule or "-", threshold=row.threshold,
                sizes=", ".join(f"{other.n_base}/{other.n_cand}" for other in seen)
                or f"{row.n_base}/{row.n_cand}",
                committed=_change(against_record) if against_record is not None
                and not math.isnan(against_record.ratio) else "-",
                changes=tuple(_change(other) if not math.isnan(other.ratio) else "-"
                              for other in seen),
                failed=key in confirmed, why=why))
        return lines

    def verdict_lines(self) -> list[str]:
        """The gate's last words: each pair, what failed, what was cleared and why."""
        lines = []
        for number, pair in enumerate(self.pairs, 1):
            lines.append(f"pair {number} of at most {PAIRS} ({pair.why}): the baseline's code "
                         f"(commit {(self.commit or '')[:12]}) as run {pair.baseline}, this "
                         f"code as run {pair.candidate}, {pair.order}; its runs took "
                         f"{pair.seconds / 60:.1f} min")
        if self.unconfirmed_because:
            lines.append(f"{'no further pair' if self.pairs else 'no pair'} on this machine: "
                         f"{self.unconfirmed_because}")
        lines += self.floor_notes
        for number, pair in enumerate(self.pairs, 1):
            for row, floor in pair.floor_moves:
                lines.append(f"the floor's move, not a regression: {row_name(row)} "
                             f"{_change(row)} in pair {number}, where {row.backend}'s own "
                             f"figure did not regress and {floor.backend}'s moved "
                             f"{_change(floor)}")
        for row in self.cleared:
            lines.append(f"cleared: {row_name(row)} {_change(row)}, not found again in every "
                         "pair against the baseline's code run here")
        for row in self.confirmed:
            again = ", ".join(_change(other) for other in self._again(row))
            lines.append(f"REGRESSION: {row_name(row)}"
                         + (f" {again} in the pairs" if self.pairs else
                            f" {_change(row)} against the committed baseline"))
        lines += [f"FAULT: {fault}" for fault in self.screen.faults]
        faults = f", {len(self.screen.faults)} fault(s)" if self.screen.faults else ""
        lines.append(f"gate: {'FAIL' if self.failed else 'pass'}: "
                     f"{len(self.confirmed)} regression(s) confirmed, {len(self.cleared)} "
                     f"cleared{faults}; the pairs took {self.seconds / 60:.1f} min")
        return lines

    def _again(self, row: Row) -> list[Row]:
        """The row in each pair, in order."""
        return [other for pair in self.pairs for other in pair.rows
                if row_key(other) == row_key(row)]


def _floor_row(absolute: dict[tuple[str, str, str, str], Row], row: Row, metric: str
               ) -> Row | None:
    """The absolute row of ``row``'s floor for ``metric``: of the same variant, else its
    plain one (as :mod:`harness.normalize` divides by it)."""
    floor = registry.floors().get(registry.family(row.backend))
    if floor is None:
        return None
    return (absolute.get((row.scenario, floor, row.variant, metric))
            or absolute.get((row.scenario, floor, "", metric)))


Runner = Callable[[str, str, Path], Path]  # (commit or "", suite, results dir) -> run dir


def _run(commit: str, suite: str, results_dir: Path) -> Path:
    """The baseline's code (``commit``) or this checkout's (``""``) on ``suite``."""
    if commit:
        return reference.run_suite(commit, suite, results_dir)
    return reference.run_again(suite, results_dir)


def confirm(screen: Comparison, cand_dir: Path, suite: str, thresholds: Thresholds,
            alpha: float, allow_image_change: bool, runner: Runner = _run) -> Confirmation:
    """Judge the candidate run ``cand_dir`` against the baseline's code run here on ``suite``
    in up to :data:`PAIRS` pairs (module docstring), each in both forms (ratios to the floors
    and absolute figures), whatever form the screen used. The runs land beside ``cand_dir``."""
    if screen.faults:  # it fails anyway: nothing measured here could clear a fault
        return Confirmation(screen, unconfirmed_because="the screen found faults")
    try:
        if screen.baseline_dir is None:
            raise reference.ReferenceError("the screen does not say which baseline run it used")
        commit = reference.commit_of(screen.baseline_dir)
    except reference.ReferenceError as error:
        log.warning("cannot run the baseline's code here: %s", error)
        return Confirmation(screen, unconfirmed_because=str(error))
    outcome = Confirmation(screen, commit=commit)
    results_dir = cand_dir.parent
    why = "every gate: the same-machine A/B is the verdict"
    while len(outcome.pairs) < PAIRS:
        log.warning("pair %d of at most %d (%s): the baseline's code (commit %s) and this "
                    "code on this machine", len(outcome.pairs) + 1, PAIRS, why, commit[:12])
        started = time.monotonic()
        try:
            if not outcome.pairs:  # B (the candidate's own run) then A
                first, second = cand_dir, runner(commit, suite, results_dir)
                base_run, cand_run, order = second, first, "B A"
            else:  # A then B
                base_run = runner(commit, suite, results_dir)
                cand_run = runner("", suite, results_dir)
                order = "A B"
        except reference.ReferenceError as error:
            log.warning("cannot run the pair here: %s", error)
            outcome.unconfirmed_because = str(error)
            break
        seconds = time.monotonic() - started
        outcome.seconds += seconds
        pair = Pair(
            ratios=compare_runs(base_run, cand_run, thresholds, alpha, normalized=True,
                                allow_image_change=allow_image_change),
            absolute=compare_runs(base_run, cand_run, thresholds, alpha, normalized=False,
                                  allow_image_change=allow_image_change),
            order=order, seconds=seconds, why=why)
        outcome.pairs.append(pair)
        log.warning("pair %d took %.1f min: %d regression(s)", len(outcome.pairs),
                    seconds / 60, len(pair.regressions))
        if len(outcome.pairs) == 1:
            outcome.floor_notes = floors_moved_by_themselves(
                screen.baseline_dir, cand_dir, pair, thresholds, alpha, allow_image_change)
        if not outcome.confirmed:
            break
        why = (f"pair {len(outcome.pairs)} found {len(outcome.confirmed)} regression(s): "
               "measured again, the baseline's code first")
    return outcome


def floors_moved_by_themselves(committed: Path, cand_dir: Path, pair: Pair,
                               thresholds: Thresholds, alpha: float,
                               allow_image_change: bool) -> list[str]:
    """One line for each floor metric whose absolute median moved beyond its threshold
    against the committed baseline while the first pair found no move of it: the machine."""
    try:
        against_record = compare_runs(committed, cand_dir, thresholds, alpha,
                                      normalized=False, allow_image_change=allow_image_change)
    except CompareError as error:  # the record may come from a machine too unlike this one
        log.info("floors not compared with the committed baseline: %s", error)
        return []
    floors = set(registry.floors().values())
    moved_here = {row_key(row) for row in pair.absolute.rows
                  if row.backend in floors and row.verdict in MOVED}
    return [f"floor {row_name(row)} moved {_change(row)} against the committed baseline but "
            "not against the baseline's code here: the machine, not the code (the ratios "
            "divide it out)"
            for row in against_record.rows
            if row.backend in floors and row.verdict in MOVED
            and row_key(row) not in moved_here]
