"""The order in which backends (or backend, variant pairs) take their turn, for every kind.

Each round shuffles the turns with a generator seeded from the run's order seed, the scenario
and the round, so a run can be repeated turn for turn (``cvbench run --seed``) and the seed is
in the run's metadata. The position of each turn in its round goes with its samples, so a
report can show whether going first or last moves a figure (an order effect).
:func:`interleaved` runs one round's order forward, then backward, and so on (A B C C B A ...):
for turns as long as a density ramp, where the host's state carries from one turn to the next.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def order(turns: Sequence[T], seed: int, scenario: str, round_index: int) -> list[T]:
    """``turns`` in this round's order (the same for the same seed, scenario and round)."""
    shuffled = list(turns)
    random.Random(f"{seed}:{scenario}:{round_index}").shuffle(shuffled)
    return shuffled


def interleaved(turns: Sequence[T], seed: int, scenario: str, passes: int
                ) -> list[tuple[int, T]]:
    """``passes`` passes over ``turns`` as (pass index, turn): the seeded order of round 0,
    then the same reversed, then forward again (A B C C B A A B C ...), so each turn's k-th
    pass sits at mirrored positions and no turn always follows the same neighbour's work.
    With one pass it is :func:`order` of round 0."""
    forward = order(turns, seed, scenario, 0)
    return [(index, turn) for index in range(passes)
            for turn in (forward if index % 2 == 0 else forward[::-1])]
