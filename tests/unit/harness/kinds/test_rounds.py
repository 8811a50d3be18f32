"""The round loop's orders: a fresh seeded shuffle per round, or round 0's order mirrored."""

from __future__ import annotations

from dataclasses import dataclass

from fakes import FakeBackend, context

from harness import scenario
from harness.kinds import rounds


@dataclass(frozen=True)
class _Turn:
    backend: str


def _run(tmp_path, repetitions: dict[str, int], mirrored: bool) -> tuple[list[str], int]:
    """The backends in the order the loop measured them, and the run's seed."""
    names = tuple(repetitions)
    ctx = context(tmp_path, *(FakeBackend(name=name) for name in names))
    plans = {name: scenario.make("startup") for name in names}
    ran: list[str] = []

    def measure(turn: _Turn, _slot: rounds.Slot) -> list:
        ran.append(turn.backend)
        return []

    rounds.Rounds("scale", plans, {name: rounds.Schedule(0, count)
                                   for name, count in repetitions.items()},
                  [_Turn(name) for name in names], measure, what=lambda _turn: "turn",
                  mirrored=mirrored).run(ctx)
    return ran, ctx.seed


def test_mirrored_rounds_run_round_zero_forward_then_backward(tmp_path) -> None:
    ran, seed = _run(tmp_path, {"a": 4, "b": 4, "c": 4}, mirrored=True)
    a, b, c = rounds.order(("a", "b", "c"), seed, "scale", 0)  # round 0's shuffle
    assert ran == [a, b, c, c, b, a, a, b, c, c, b, a]


def test_a_backend_with_fewer_mirrored_rounds_leaves_the_others_places(tmp_path) -> None:
    ran, seed = _run(tmp_path, {"a": 1, "b": 3, "c": 3}, mirrored=True)
    forward = rounds.order(("a", "b", "c"), seed, "scale", 0)
    rest = [name for name in forward if name != "a"]
    assert ran == forward + rest[::-1] + rest


def test_unmirrored_rounds_shuffle_each_round_afresh(tmp_path) -> None:
    ran, seed = _run(tmp_path, {name: 6 for name in "abcde"}, mirrored=False)
    expected = [name for index in range(6)
                for name in rounds.order(tuple("abcde"), seed, "scale", index)]
    assert ran == expected


def test_mirrored_orders_are_reversals_of_the_seeded_one() -> None:
    forward = rounds.order(("x", "y", "z"), 7, "scale", 0)
    assert rounds.mirrored(("x", "y", "z"), 7, "scale", 0) == forward
    assert rounds.mirrored(("x", "y", "z"), 7, "scale", 1) == forward[::-1]
    assert rounds.mirrored(("x", "y", "z"), 7, "scale", 2) == forward
