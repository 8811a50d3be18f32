"""Turns, rounds and their order: the one round loop every kind that repeats runs through.

Each round shuffles the turns with a generator seeded from the run's order seed, the scenario
and the round, so a run can be repeated turn for turn (``cvbench run --seed``) and the seed is
in the run's metadata. The position of each turn in its round goes with its samples, so a
report can show whether going first or last moves a figure (an order effect).
:func:`mirrored` runs round 0's order forward, then backward, and so on (A B C C B A ...):
for turns as long as a density ramp, where the host's state carries from one turn to the next.

:class:`Rounds` is the loop itself (every kind that repeats uses it): unmeasured warm-up
rounds first, every backend's ending together, so no backend is measured while another still
warms up; then the measured rounds; in each, every due turn once, in the seeded order, after
the backend's settle time. Its one failure path: a failed turn is one line in the run's
failures and marks the run incomplete (``cvbench run`` exits 3), and the run goes on; its one
give-up policy: what fails :data:`MAX_FAILURES_IN_A_ROW` times in a row is given up (a turn,
or a whole backend when what its turns share, such as its long-lived instance, cannot be
had), and the line says so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from harness.backends.base import BackendError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from harness.context import RunContext
    from harness.results import Sample
    from harness.scenario import Scenario

T = TypeVar("T")
MAX_FAILURES_IN_A_ROW = 3


def order(turns: Sequence[T], seed: int, scenario: str, round_index: int) -> list[T]:
    """``turns`` in this round's order (the same for the same seed, scenario and round)."""
    shuffled = list(turns)
    random.Random(f"{seed}:{scenario}:{round_index}").shuffle(shuffled)
    return shuffled


def mirrored(turns: Sequence[T], seed: int, scenario: str, round_index: int) -> list[T]:
    """``turns`` in round 0's seeded order, reversed in odd rounds (A B C C B A A B C ...),
    so each turn's k-th round sits at mirrored positions and no turn always follows the same
    neighbour's work. Round 0 is :func:`order`'s."""
    forward = order(turns, seed, scenario, 0)
    return forward if round_index % 2 == 0 else forward[::-1]


class Turn(Protocol):
    """What a kind's turn has at least: the backend it runs on (hashable, e.g. a frozen
    dataclass)."""

    @property
    def backend(self) -> str: ...


TurnT = TypeVar("TurnT", bound=Turn)


@dataclass(frozen=True)
class Schedule:
    """One backend's share of the rounds: unmeasured, measured, idle time before each turn."""

    warmup: int
    repetitions: int
    settle_s: float = 0.0


@dataclass(frozen=True)
class Slot:
    """Where a turn sits: its round (counted over the whole loop), its repetition (negative
    in the backend's warm-up rounds), its position in the round."""

    round: int
    repetition: int
    position: int
    label: str  # "warmup0", "rep3": in failure lines and file names
    note: Callable[[str], None] = field(default=lambda _text: None, compare=False, repr=False)
    # shows how a long turn is going on its progress line

    @property
    def warmup(self) -> bool:
        return self.repetition < 0


@dataclass
class Rounds(Generic[TurnT]):
    """The round loop of one scenario over ``turns``.

    ``measure(turn, slot)`` makes one turn and returns its samples (dropped in a warm-up
    round); ``prepare(turn, slot)``, if given, first makes sure of what the backend's turns
    share (the workload kind's instance), and its failures count against the backend.
    ``errors`` are the failures of a turn; anything else stops the run. ``what(turn)`` names a
    turn in a failure line, ``task(turn)`` the progress line it advances (one per distinct
    name), ``info(turn, samples)`` what that line shows after it. Each round's turns run
    in a fresh seeded shuffle (:func:`order`) or, with ``mirrored``, in :func:`mirrored` order
    (for turns that leave the host changed for the next, such as density ramps).
    """

    scenario: str
    plans: Mapping[str, Scenario[Any]]  # backend -> its scenario (overrides applied)
    schedules: Mapping[str, Schedule]  # backend -> its share of the rounds
    turns: Sequence[TurnT]
    measure: Callable[[TurnT, Slot], list[Sample]]
    what: Callable[[TurnT], str]
    errors: tuple[type[Exception], ...] = (BackendError,)
    prepare: Callable[[TurnT, Slot], None] | None = None
    task: Callable[[TurnT], str] = field(default=lambda turn: turn.backend)
    info: Callable[[TurnT, list[Sample]], str] | None = None
    mirrored: bool = False

    def run(self, ctx: RunContext) -> None:
        first_measured = max((s.warmup for s in self.schedules.values()), default=0)
        last = max((first_measured + s.repetitions for s in self.schedules.values()), default=0)
        failed = _Failures()
        with ctx.progress() as progress:
            totals: dict[str, int] = {}
            for turn in self.turns:
                name = self.task(turn)
                totals[name] = totals.get(name, 0) + self.schedules[turn.backend].repetitions
            tasks = {name: progress.add_task(f"{self.scenario} {name}", total=total, info="")
                     for name, total in totals.items()}
            for round_index in range(last):
                due = [turn for turn in self.turns
                       if self._due(turn, round_index, first_measured)
                       and not failed.given_up(turn)]
                for position, turn in enumerate(self._arranged(due, ctx.seed, round_index)):
                    if failed.given_up(turn):  # its backend was given up in this round
                        continue
                    line = tasks[self.task(turn)]
                    slot = self._slot(turn, round_index, first_measured, position,
                                      _note(progress, line))
                    samples = self._turn(ctx, turn, slot, failed)
                    if samples is None or slot.warmup:
                        continue  # failed, or a warm-up: caches, lazy imports, first touch
                    ctx.record(samples)
                    progress.update(line, advance=1, info=self.info(turn, samples)
                                    if self.info else self.what(turn))
                ctx.writer.flush()

    def _arranged(self, due: list[TurnT], seed: int, round_index: int) -> list[TurnT]:
        """This round's due turns in order. A mirrored order is arranged over every turn, then
        cut to the due ones, so a backend with fewer rounds leaves the others' places alone."""
        if not self.mirrored:
            return order(due, seed, self.scenario, round_index)
        return [turn for turn in mirrored(self.turns, seed, self.scenario, round_index)
                if turn in due]

    def _due(self, turn: TurnT, round_index: int, first_measured: int) -> bool:
        schedule = self.schedules[turn.backend]
        return first_measured - schedule.warmup <= round_index \
            < first_measured + schedule.repetitions

    def _slot(self, turn: TurnT, round_index: int, first_measured: int, position: int,
              note: Callable[[str], None]) -> Slot:
        repetition = round_index - first_measured
        warmup = self.schedules[turn.backend].warmup
        label = f"warmup{repetition + warmup}" if repetition < 0 else f"rep{repetition}"
        return Slot(round_index, repetition, position, label, note)

    def _turn(self, ctx: RunContext, turn: TurnT, slot: Slot, failed: _Failures
              ) -> list[Sample] | None:
        """One turn, after the backend's settle time; its samples, or None if it failed."""
        settle_s = self.schedules[turn.backend].settle_s
        if settle_s:
            time.sleep(settle_s)
        if self.prepare is not None:
            try:
                self.prepare(turn, slot)
            except self.errors as error:
                self._fail(ctx, turn, slot, error, failed.add(turn, of_backend=True),
                           "this backend")
                return None
            failed.clear(turn, of_backend=True)
        try:
            samples = self.measure(turn, slot)
        except self.errors as error:
            self._fail(ctx, turn, slot, error, failed.add(turn),
                       f"{self.what(turn)} on this backend")
            return None
        failed.clear(turn)
        return samples

    def _fail(self, ctx: RunContext, turn: TurnT, slot: Slot, error: Exception, given_up: bool,
              what: str) -> None:
        """The one failure path: a line of the run's failures, the run incomplete."""
        ctx.fail(self.plans[turn.backend], turn.backend,
                 f"{self.what(turn)} ({slot.label}): {error}"
                 + (f"; giving up on {what}" if given_up else ""))


def _note(progress: Progress, line: TaskID) -> Callable[[str], None]:
    """What a turn calls to show how it is going on its progress line."""
    return lambda text: progress.update(line, info=text)


@dataclass
class _Failures:
    """Failures in a row, of each turn and of each backend; what reaches
    :data:`MAX_FAILURES_IN_A_ROW` is given up."""

    in_a_row: dict[tuple[str, object], int] = field(default_factory=dict)

    def add(self, turn: Turn, of_backend: bool = False) -> bool:
        """Count one more failure of the turn (or of its backend); True if that gives it up."""
        key = _key(turn, of_backend)
        self.in_a_row[key] = self.in_a_row.get(key, 0) + 1
        return self.in_a_row[key] == MAX_FAILURES_IN_A_ROW

    def clear(self, turn: Turn, of_backend: bool = False) -> None:
        self.in_a_row.pop(_key(turn, of_backend), None)

    def given_up(self, turn: Turn) -> bool:
        return max(self.in_a_row.get(_key(turn, False), 0),
                   self.in_a_row.get(_key(turn, True), 0)) >= MAX_FAILURES_IN_A_ROW


def _key(turn: Turn, of_backend: bool) -> tuple[str, object]:
    return ("backend", turn.backend) if of_backend else ("turn", turn)
