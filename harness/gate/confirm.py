"""A regression against the committed baseline, confirmed on this machine before it fails CI.

The gate screens a candidate against the committed baseline (:mod:`harness.gate.compare`).
When that finds regressions, the baseline's own code is measured again here, then the
candidate's code a second time (:mod:`harness.gate.reference`), and the two are compared at
the same-machine thresholds: a *pair*. A metric that regressed in the first pair too gets a
second pair, so one disturbed run cannot fail the gate alone (seen: a reference run whose
process floor launched at 0.95 ms, against 0.52 ms in the runs either side of it, turned every
container's ratio into a "regression"); the second pair runs the candidate first, so a host
whose speed drifts (still freeing what the tests made) favours neither. A metric fails the
gate only when it regressed against the committed baseline and in every pair: the code got
slower. One that did not is the machine, and the gate says so. When the reference cannot be
measured (a shallow clone without the baseline's commit, a run that fails), the screen's
verdict stands and the gate says why. A screen with faults (something of the baseline absent,
the candidate incomplete or with failures: :attr:`Comparison.faults`) fails as it is: no
measurement on this machine can clear those.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from harness.gate import reference
from harness.gate.compare import Comparison, compare_runs
from harness.gate.stats import Row
from harness.gate.thresholds import Thresholds

log = logging.getLogger(__name__)

PAIRS = 2  # at most: a second pair only for what the first one confirmed


def row_key(row: Row) -> tuple[str, str, str, str]:
    return (row.scenario, row.backend, row.variant, row.metric)


def row_name(row: Row) -> str:
    name = f"{row.scenario}/{row.backend}.{row.metric}"
    return f"{name} [{row.variant}]" if row.variant else name


def _change(row: Row) -> str:
    """The move of a row's median, as a signed percentage."""
    return f"{(row.ratio - 1) * 100:+.0f}%"


@dataclass
class Confirmation:
    """The screen against the committed baseline and, when it failed, the checks against the
    baseline's code measured again on this machine (one comparison per pair, in order)."""

    screen: Comparison
    commit: str | None = None  # the baseline's commit, when it was measured again
    pairs: list[Comparison] = field(default_factory=list)
    unconfirmed_because: str | None = None  # why the reference could not be measured

    @property
    def against_reference(self) -> Comparison | None:
        """The first check against the baseline's code; None when none ran."""
        return self.pairs[0] if self.pairs else None

    @property
    def confirmed(self) -> list[Row]:
        """The regressions that fail the gate."""
        kept = self.screen.regressions
        for pair in self.pairs:
            again = {row_key(row) for row in pair.regressions}
            kept = [row for row in kept if row_key(row) in again]
        return kept

    @property
    def cleared(self) -> list[Row]:
        """Regressions against the committed baseline that the code of that baseline shows
        on this machine too: the machine, not the code."""
        kept = {row_key(row) for row in self.confirmed}
        return [row for row in self.screen.regressions if row_key(row) not in kept]

    @property
    def failed(self) -> bool:
        return bool(self.confirmed or self.screen.faults)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def verdict_lines(self) -> list[str]:
        """The gate's last words: what failed, what was cleared and why (one line each)."""
        lines = []
        for number, pair in enumerate(self.pairs, 1):
            lines.append(f"measured again on this machine ({number} of {len(self.pairs)}): the "
                         f"baseline's code (commit {(self.commit or '')[:12]}) as run "
                         f"{pair.baseline}, then this code as run {pair.candidate}")
        if self.unconfirmed_because:
            lines.append(f"{'no further check' if self.pairs else 'not confirmed'} on this "
                         f"machine: {self.unconfirmed_because}")
        for row in self.cleared:
            lines.append(f"cleared (no slower than the baseline's code run here): "
                         f"{row_name(row)} {_change(row)} against the committed baseline")
        for row in self.confirmed:
            again = ", ".join(_change(other) for other in self._again(row))
            against = f", {again} against its code here" if again else ""
            lines.append(f"REGRESSION: {row_name(row)} {_change(row)} against the committed "
                         f"baseline{against}")
        lines += [f"FAULT: {fault}" for fault in self.screen.faults]
        faults = f", {len(self.screen.faults)} fault(s)" if self.screen.faults else ""
        lines.append(f"gate: {'FAIL' if self.failed else 'pass'}: "
                     f"{len(self.confirmed)} regression(s) confirmed, {len(self.cleared)} "
                     f"cleared as the machine's{faults}")
        return lines

    def _again(self, row: Row) -> list[Row]:
        """The row in each pair, in order."""
        return [other for pair in self.pairs for other in pair.rows
                if row_key(other) == row_key(row)]


def confirm(screen: Comparison, cand_dir: Path, suite: str, thresholds: Thresholds,
            alpha: float, normalized: bool, allow_image_change: bool) -> Confirmation:
    """Confirm ``screen``'s regressions against ``suite`` run here with the code of the
    baseline the screen used, in up to :data:`PAIRS` pairs.

    The reference runs land beside ``cand_dir``. Nothing is run when the screen found no
    regression; a second pair only when the first confirmed one.
    """
    if not screen.regressions:
        return Confirmation(screen)
    if screen.faults:  # it fails anyway: nothing measured here could clear a fault
        return Confirmation(screen, unconfirmed_because="the screen found faults")
    try:
        if screen.baseline_dir is None:
            raise reference.ReferenceError("the screen does not say which baseline run it used")
        commit = reference.commit_of(screen.baseline_dir)
    except reference.ReferenceError as error:
        log.warning("cannot confirm on this machine: %s", error)
        return Confirmation(screen, unconfirmed_because=str(error))
    outcome = Confirmation(screen, commit=commit)
    while len(outcome.pairs) < PAIRS and outcome.confirmed:
        log.warning("%d regression(s) stand: measuring the baseline's code (commit %s) and this "
                    "code again on this machine (%d of at most %d) to tell the code from the "
                    "machine", len(outcome.confirmed), commit[:12], len(outcome.pairs) + 1,
                    PAIRS)
        try:
            if len(outcome.pairs) % 2 == 0:
                reference_run = reference.run_suite(commit, suite, cand_dir.parent)
                second_run = reference.run_again(suite, cand_dir.parent)
            else:  # the other way round (A B B A), so a host that drifts favours neither
                second_run = reference.run_again(suite, cand_dir.parent)
                reference_run = reference.run_suite(commit, suite, cand_dir.parent)
        except reference.ReferenceError as error:
            log.warning("cannot confirm on this machine: %s", error)
            outcome.unconfirmed_because = str(error)
            break
        outcome.pairs.append(compare_runs(reference_run, second_run, thresholds, alpha,
                                          normalized=normalized,
                                          allow_image_change=allow_image_change))
    return outcome
