"""The startup scenario: N times start → READY → stop → remove, every turn timed alike.

A *turn* is one backend with one start variant: ``cold`` (nothing of the instance exists
before the clock) or ``warm`` (the backend's :meth:`create` runs before the clock, its
:meth:`resume` inside). Every round takes each turn once, in an order shuffled from the run's
seed (the position goes with the samples); ``warmup`` rounds come first and are not
recorded; ``settle_s`` is an idle gap between turns.

Per start: ``start_to_ready_s`` (the start or resume request until READY), split where the
backend's call returns into ``start_call_s`` and ``ready_wait_s``, plus the backend's own
phases (``Instance.phases``, e.g. libvirt's ``createxml_s``; cold starts only: a warm
instance's phases happened before the clock); ``stop_s`` (the stop request until the last
process exited) and ``cleanup_s`` (removing what it held), timed apart. Where a backend tells
the harness's own share of a step from the rest (``Instance.harness``: the OCI backends'
``harness_s`` inside the start or resume call, ``stop_harness_s``, ``cleanup_harness_s``),
it is recorded too, in either variant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import metrics
from harness.backends.base import COLD, VARIANTS, WARM, BackendError, Instance
from harness.kinds import rounds
from harness.params import param
from hostkit import validate

if TYPE_CHECKING:
    import pandas as pd

    from harness.context import RunContext
    from harness.scenario import Scenario

MAX_CONSECUTIVE_FAILURES = 3


@dataclass(frozen=True)
class StartupParams:
    """The startup scenario's own keys."""

    repetitions: int = field(default=20, metadata=param(
        minimum=1, maximum=validate.MAX_ROUNDS,
        doc="measured start → READY → stop cycles per backend and variant"))
    warmup: int = field(default=2, metadata=param(
        minimum=0, maximum=validate.MAX_ROUNDS, doc="unmeasured rounds before the measured ones"))
    variants: tuple[str, ...] = field(default=(COLD,), metadata=param(
        choices=VARIANTS, doc="start variants measured: cold, warm (never mixed in a ratio)"))
    settle_s: float = field(default=0.0, metadata=param(
        bounds=validate.DURATION_S, doc="idle time between two measured turns"))


@dataclass(frozen=True)
class Turn:
    backend: str
    variant: str


def turns(ctx: RunContext, plans: dict[str, Scenario[StartupParams]]) -> list[Turn]:
    """Every (backend, variant) the scenario asks for and the backend offers; a variant a
    backend lacks is noted in the run's metadata, not silently dropped."""
    found = []
    for name, plan in plans.items():
        offered = getattr(ctx.backends[name], "variants", (COLD,))
        for variant in plan.params.variants:
            if variant in offered:
                found.append(Turn(name, variant))
            else:
                ctx.note_failure(plan, name, f"no {variant} start: not measured")
    return found


def run(ctx: RunContext, scenario: Scenario[StartupParams], backend_names: tuple[str, ...]
        ) -> None:
    plans = {name: scenario.for_backend(name) for name in backend_names}
    all_turns = turns(ctx, plans)
    cycles = {turn: plans[turn.backend].params.warmup + plans[turn.backend].params.repetitions
              for turn in all_turns}
    failures = dict.fromkeys(all_turns, 0)
    with ctx.progress() as progress:
        tasks = {turn: progress.add_task(f"{scenario.name} {turn.backend} {turn.variant}",
                                         total=plans[turn.backend].params.repetitions, info="")
                 for turn in all_turns}
        for round_index in range(max(cycles.values(), default=0)):
            due = [t for t in all_turns
                   if round_index < cycles[t] and failures[t] < MAX_CONSECUTIVE_FAILURES]
            for position, turn in enumerate(rounds.order(due, ctx.seed, scenario.name,
                                                         round_index)):
                plan = plans[turn.backend]
                repetition = round_index - plan.params.warmup
                if plan.params.settle_s:
                    time.sleep(plan.params.settle_s)
                try:
                    timings = _one(ctx, plan, turn)
                except BackendError as error:
                    failures[turn] += 1  # a measurement that failed: the run is incomplete
                    ctx.fail(plan, turn.backend,
                             f"{turn.variant} repetition {repetition}: {error}")
                    continue
                failures[turn] = 0
                if repetition < 0:
                    continue  # warm-up: caches, lazy imports, first-touch pages
                ctx.record([ctx.sample(plan, turn.backend, metric, value, "s",
                                       repetition=repetition, variant=turn.variant,
                                       position=position)
                            for metric, value in timings.items()])
                progress.update(tasks[turn], advance=1,
                                info=f"last {timings['start_to_ready_s'] * 1000:.1f} ms")
    ctx.writer.flush()


def _one(ctx: RunContext, scenario: Scenario[Any], turn: Turn) -> dict[str, float]:
    """One start → READY → stop → remove; its timings in seconds, by metric name."""
    backend = ctx.backends[turn.backend]
    instance: Instance | None = None
    try:
        if turn.variant == WARM:
            instance = ctx.create(turn.backend, scenario)  # before the clock
            started = metrics.now_ns()
            backend.resume(instance)
        else:
            started = metrics.now_ns()
            instance = ctx.start(turn.backend, scenario)
        called = metrics.now_ns()
        backend.wait_ready(instance, scenario.timeout_s)
        ready = metrics.now_ns()
    except BaseException:
        if instance is not None:
            ctx.stop(turn.backend, instance)
        raise
    stopping = metrics.now_ns()
    backend.stop(instance)
    stopped = metrics.now_ns()
    backend.remove(instance)
    removed = metrics.now_ns()
    ctx.untrack(turn.backend, instance)
    return {
        "start_to_ready_s": (ready - started) / 1e9,
        "start_call_s": (called - started) / 1e9,
        "ready_wait_s": (ready - called) / 1e9,
        "stop_s": (stopped - stopping) / 1e9,
        "cleanup_s": (removed - stopped) / 1e9,
        **(instance.phases if turn.variant == COLD else {}),
        **instance.harness,  # the harness's share of the timed steps, either variant
    }


def charts(samples: pd.DataFrame, scenario: str, output: Path) -> list[Path]:
    """The start → READY and the stop distributions per backend."""
    from harness.charts import latency_chart

    return [*latency_chart(samples, scenario, "start_to_ready_s", output),
            *latency_chart(samples, scenario, "stop_s", output)]
