"""What a scenario kind declares: its keys, how it runs and draws, and what its metrics mean.

Each kind module ends with one :class:`Kind`, named in :mod:`harness.kinds.registry`. Its
:class:`Metric` declarations are the one place that says what a metric means: its unit, which
way is worse (the regression gate, :mod:`harness.gate.verdicts`), whether the report's
headline shows it and in which words (:mod:`harness.report.headline`), and whether it is a
reading of the host's state rather than a result (never divided by the floor:
:mod:`harness.normalize`; never gated). A chart's caption is declared next to them, by the
chart's name.

This module names neither the run context nor the scenario types, so that the scenario
loader can read the registry without depending on what a kind runs with.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import pandas as pd

LOWER = "lower"  # lower is better: durations, memory
HIGHER = "higher"  # higher is better: rates, counts reached
BETTER = (LOWER, HIGHER)

ChartFunction: TypeAlias = "Callable[[pd.DataFrame, str, Path], list[Path]]"


@dataclass(frozen=True)
class Headline:
    """How the report's headline shows a metric: a row per backend and variant."""

    label: str  # the measure's name in the table: "start → READY"
    tail: bool = True  # show the p95 too (a distribution, not one value per pass)
    ratio: bool = True  # show ratios to the floor and the reference
    note: str = ""  # under the table: what the figure is


@dataclass(frozen=True)
class Metric:
    """One metric a kind records, or a family of them by a name pattern.

    ``better`` is None for a figure that is said but not gated (the phases of a start say
    where its time went; the start itself is gated). A host reading (``host_reading``) is a
    point of a curve or a counter of the host, not an outcome of an instance: never divided
    by the floor, never gated; an ``input`` (a condition of the run, such as MemAvailable or
    the number alive at a step) is also shown apart from the results.
    """

    name: str  # exact, or a pattern with ``*`` (``mem_item_*_bytes``): exact names win
    unit: str  # as samples.csv writes it: s, bytes, count, pages, MiB/s, ...
    better: str | None = None  # LOWER, HIGHER, or None: reported, never gated
    headline: Headline | None = None  # None: not in the headline
    host_reading: bool = False
    input: bool = False

    def __post_init__(self) -> None:
        if self.better is not None and self.better not in BETTER:
            raise ValueError(f"metric {self.name!r}: better must be one of {BETTER}")
        if self.input and not self.host_reading:
            raise ValueError(f"metric {self.name!r}: an input is a host reading")
        if self.host_reading and self.better is not None:
            raise ValueError(f"metric {self.name!r}: a host reading is never gated")
        if self.headline is not None and self.pattern:
            raise ValueError(f"metric {self.name!r}: a headline needs an exact name")

    @property
    def pattern(self) -> bool:
        return "*" in self.name

    def matches(self, metric: str) -> bool:
        return fnmatch.fnmatchcase(metric, self.name) if self.pattern else metric == self.name


@dataclass(frozen=True)
class Kind:
    """A scenario kind, as its module declares it (``KIND``).

    ``run(ctx, scenario, backends)`` measures one scenario of the kind on the given backends
    through the run context; ``charts(samples, scenario, output)`` draws its charts into
    ``output`` and returns their paths, each named ``<scenario>-<chart>``; ``captions`` says
    what each ``<chart>`` shows.
    """

    name: str  # the value of a scenario's ``kind`` key
    summary: str  # one line: what a scenario of this kind measures
    params: type  # frozen dataclass of the kind's own keys (fields with params.param())
    run: Callable[..., None]  # typed in the kind's module (its context and scenario types)
    metrics: tuple[Metric, ...] = ()
    charts: ChartFunction | None = None
    captions: Mapping[str, str] = field(default_factory=dict)

    def metric(self, name: str) -> Metric | None:
        """The declaration of ``name``: its exact one, else the first pattern it matches."""
        exact = next((m for m in self.metrics if not m.pattern and m.name == name), None)
        return exact or next((m for m in self.metrics if m.pattern and m.matches(name)), None)

    def headline(self) -> tuple[Metric, ...]:
        """The metrics the headline shows, in their order."""
        return tuple(m for m in self.metrics if m.headline is not None)


def same_meaning(first: Metric, second: Metric) -> bool:
    """Whether two declarations of one name agree on what the gate and normalisation read
    (the headline's words may differ by kind)."""
    return ((first.unit, first.better, first.host_reading, first.input)
            == (second.unit, second.better, second.host_reading, second.input))

