"""The order in which backends (or backend, variant pairs) take their turn, for every kind.

Each round shuffles the turns with a generator seeded from the run's order seed, the scenario
and the round, so a run can be repeated turn for turn (``cvbench run --seed``) and the seed is
in the run's metadata. The position of each turn in its round goes with its samples, so a
report can show whether going first or last moves a figure (an order effect).
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
