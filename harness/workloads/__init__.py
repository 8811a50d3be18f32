"""What runs inside an instance for the ``workload`` kind: the agent connection to the image's
``/init`` (:mod:`agent`), the catalogue of workloads (:mod:`catalog`) and one output parser per
tool (:mod:`sysbench`, :mod:`fio`, :mod:`iperf3`, :mod:`sockperf`, :mod:`redis_benchmark`).

A parser takes a tool's raw output (kept in the run directory) and returns :class:`Figure`
values in the unit they are recorded in; anything it cannot read raises :class:`ParseError`.
"""

from __future__ import annotations

from dataclasses import dataclass


class ParseError(ValueError):
    """A tool printed something its parser cannot read; the message says what was missing."""


@dataclass(frozen=True)
class Figure:
    """One result of a workload: metric name, value, unit."""

    metric: str
    value: float
    unit: str


def positive(value: float, what: str) -> float:
    """``value`` if it is a positive finite number, else ParseError naming ``what``."""
    if not value > 0 or value == float("inf"):
        raise ParseError(f"{what} is {value!r}, expected a positive number")
    return value
