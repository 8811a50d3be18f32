"""The order in which backends take their turn in a round, decided in one place for every kind
(where a seeded random order, recorded with each sample's position, would replace it)."""

from __future__ import annotations


def order(backends: tuple[str, ...], round_index: int) -> tuple[str, ...]:
    """A B in even rounds, B A in odd ones, so that drift over the run hits every backend alike."""
    return backends if round_index % 2 == 0 else backends[::-1]
