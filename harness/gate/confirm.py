"""A regression against the committed baseline, confirmed on this machine before it fails CI.

The gate screens a candidate against the committed baseline (:mod:`harness.gate.compare`).
When that finds regressions, the baseline's own code is measured again here, then the
candidate's code a second time (:mod:`harness.gate.reference`), and the two are compared at
the same-machine thresholds. A metric fails the gate only when it regressed against both: the code
got slower. One that regressed only against the committed baseline is the machine, and the
gate says so. When the reference cannot be measured (a shallow clone without the baseline's
commit, a run that fails), the screen's verdict stands and the gate says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from harness.gate import reference
from harness.gate.compare import Comparison, compare_runs
from harness.gate.stats import Row
from harness.gate.thresholds import Thresholds

log = logging.getLogger(__name__)


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
    """The screen against the committed baseline and, when it failed, the check against the
    baseline's code measured again on this machine."""

    screen: Comparison
    commit: str | None = None  # the baseline's commit, when it was measured again
    against_reference: Comparison | None = None
    unconfirmed_because: str | None = None  # why the reference could not be measured

    @property
    def confirmed(self) -> list[Row]:
        """The regressions that fail the gate."""
        if self.against_reference is None:
            return self.screen.regressions
        again = {row_key(row) for row in self.against_reference.regressions}
        return [row for row in self.screen.regressions if row_key(row) in again]

    @property
    def cleared(self) -> list[Row]:
        """Regressions against the committed baseline that the code of that baseline shows
        on this machine too: the machine, not the code."""
        kept = {row_key(row) for row in self.confirmed}
        return [row for row in self.screen.regressions if row_key(row) not in kept]

    @property
    def exit_code(self) -> int:
        return 1 if self.confirmed else 0

    def verdict_lines(self) -> list[str]:
        """The gate's last words: what failed, what was cleared and why (one line each)."""
        lines = []
        if self.against_reference is not None:
            lines.append(f"measured again on this machine: the baseline's code (commit "
                         f"{(self.commit or '')[:12]}) as run {self.against_reference.baseline}"
                         f", then this code as run {self.against_reference.candidate}")
        elif self.unconfirmed_because:
            lines.append(f"not confirmed on this machine: {self.unconfirmed_because}")
        for row in self.cleared:
            lines.append(f"cleared (no slower than the baseline's code run here): "
                         f"{row_name(row)} {_change(row)} against the committed baseline")
        for row in self.confirmed:
            again = self._again(row)
            against = f", {_change(again)} against its code here" if again else ""
            lines.append(f"REGRESSION: {row_name(row)} {_change(row)} against the committed "
                         f"baseline{against}")
        lines.append(f"gate: {'FAIL' if self.confirmed else 'pass'}: "
                     f"{len(self.confirmed)} regression(s) confirmed, {len(self.cleared)} "
                     "cleared as the machine's")
        return lines

    def _again(self, row: Row) -> Row | None:
        if self.against_reference is None:
            return None
        return next((other for other in self.against_reference.rows
                     if row_key(other) == row_key(row)), None)


def confirm(screen: Comparison, cand_dir: Path, suite: str, thresholds: Thresholds,
            alpha: float, normalized: bool, allow_image_change: bool) -> Confirmation:
    """Confirm ``screen``'s regressions against ``suite`` run here with the code of the
    baseline the screen used.

    The reference run lands beside ``cand_dir``. Nothing is run when the screen found no
    regression.
    """
    if not screen.regressions:
        return Confirmation(screen)
    try:
        if screen.baseline_dir is None:
            raise reference.ReferenceError("the screen does not say which baseline run it used")
        commit = reference.commit_of(screen.baseline_dir)
        log.warning("%d regression(s) against the committed baseline: measuring the baseline's "
                    "code (commit %s) again on this machine to tell the code from the machine",
                    len(screen.regressions), commit[:12])
        reference_run = reference.run_suite(commit, suite, cand_dir.parent)
        second_run = reference.run_again(suite, cand_dir.parent)
    except reference.ReferenceError as error:
        log.warning("cannot confirm on this machine: %s", error)
        return Confirmation(screen, unconfirmed_because=str(error))
    again = compare_runs(reference_run, second_run, thresholds, alpha, normalized=normalized,
                         allow_image_change=allow_image_change)
    return Confirmation(screen, commit=commit, against_reference=again)
