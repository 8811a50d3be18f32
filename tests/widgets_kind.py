"""A test-only scenario kind, whole in this one module, as a plug-in would write it: its keys,
its run through the round loop, its metric, its chart and the chart's caption.

``widgets`` starts an instance per turn, waits for READY, stops it, and records how many
widgets a second it "made": the scenario's ``rate`` key, slightly different each repetition,
so two runs with different rates differ as a regression would.
``tests/unit/harness/kinds/test_base.py`` registers it (``KindInfo("widgets",
"widgets_kind:KIND")``) and finds it in a run, the report and the gate without any other file
knowing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.kinds import rounds
from harness.kinds.base import HIGHER, Headline, Kind, Metric
from harness.params import param

if TYPE_CHECKING:
    import pandas as pd

    from harness.context import RunContext
    from harness.results import Sample
    from harness.scenario import Scenario

METRIC = "widgets_per_s"
UNIT = "widgets/s"
CAPTION = "widgets made per second by each backend, one bar per repetition."


@dataclass(frozen=True)
class WidgetsParams:
    rate: float = field(default=100.0, metadata=param(minimum=1, maximum=1e6,
                                                      doc="widgets a second, about"))
    repetitions: int = field(default=8, metadata=param(minimum=1, maximum=100,
                                                       doc="measured rounds"))
    warmup: int = field(default=1, metadata=param(minimum=0, maximum=100,
                                                  doc="unmeasured rounds first"))


@dataclass(frozen=True)
class Turn:
    backend: str


def run(ctx: RunContext, scenario: Scenario[WidgetsParams], backend_names: tuple[str, ...]
        ) -> None:
    plans = {name: scenario.for_backend(name) for name in backend_names}

    def measure(turn: Turn, slot: rounds.Slot) -> list[Sample]:
        plan = plans[turn.backend]
        instance = ctx.start(turn.backend, plan)
        ctx.backends[turn.backend].wait_ready(instance, plan.timeout_s)
        ctx.stop(turn.backend, instance)
        made = plan.params.rate * (1 + 0.001 * slot.repetition)
        return [ctx.sample(plan, turn.backend, METRIC, made, UNIT, repetition=slot.repetition,
                           position=slot.position)]

    rounds.Rounds(
        scenario.name, plans,
        {name: rounds.Schedule(plan.params.warmup, plan.params.repetitions)
         for name, plan in plans.items()},
        [Turn(name) for name in plans], measure, what=lambda turn: "widgets",
    ).run(ctx)


def charts(samples: pd.DataFrame, scenario: str, output: Path) -> list[Path]:
    from harness.charts import plt, save

    data = samples[(samples.scenario == scenario) & (samples.metric == METRIC)]
    figure, axis = plt.subplots()
    axis.bar(range(len(data)), data.value)
    return save(figure, output, f"{scenario}-widgets")


KIND = Kind(
    "widgets", "widgets made per second, per backend", WidgetsParams, run,
    (Metric(METRIC, UNIT, HIGHER, Headline("widgets made")),), charts,
    captions={"widgets": CAPTION})
