"""The startup scenario: N times start → READY → stop → remove, every turn timed alike.

A *turn* is one backend with one start variant: ``cold`` (nothing of the instance exists
before the clock), ``warm`` (the backend's :meth:`create` runs before the clock, its
:meth:`resume` inside) or ``restore`` (the same split: before the clock a snapshot of a booted,
idle instance, made once per run, and the instance staged from it; inside, the start from the
snapshot until the restored instance answers READY). The turns go through the round loop
(:class:`harness.kinds.rounds.Rounds`): every round takes each turn once, in an order
shuffled from the run's seed (the position goes with the samples); ``warmup`` rounds come
first and are not recorded; ``settle_s`` is an idle gap between turns; a failed start is a
failure of the run, and a turn that fails three times in a row is given up.

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

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import metrics
from harness.backends.base import COLD, RESTORE, VARIANTS, WARM, Instance
from harness.kinds import rounds
from harness.kinds.base import LOWER, Headline, Kind, Metric
from harness.params import param
from hostkit import validate

if TYPE_CHECKING:
    import pandas as pd

    from harness.context import RunContext
    from harness.results import Sample
    from harness.scenario import Scenario


@dataclass(frozen=True)
class StartupParams:
    """The startup scenario's own keys."""

    repetitions: int = field(default=20, metadata=param(
        minimum=1, maximum=validate.MAX_ROUNDS,
        doc="measured start → READY → stop cycles per backend and variant"))
    warmup: int = field(default=2, metadata=param(
        minimum=0, maximum=validate.MAX_ROUNDS, doc="unmeasured rounds before the measured ones"))
    variants: tuple[str, ...] = field(default=(COLD,), metadata=param(
        choices=VARIANTS,
        doc="start variants measured: cold, warm, restore (never mixed in a ratio)"))
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

    def measure(turn: Turn, slot: rounds.Slot) -> list[Sample]:
        plan = plans[turn.backend]
        return [ctx.sample(plan, turn.backend, metric, value, "s", repetition=slot.repetition,
                           variant=turn.variant, position=slot.position)
                for metric, value in _one(ctx, plan, turn).items()]

    rounds.Rounds(
        scenario.name, plans,
        {name: rounds.Schedule(plan.params.warmup, plan.params.repetitions,
                               plan.params.settle_s) for name, plan in plans.items()},
        turns(ctx, plans), measure, what=lambda turn: turn.variant,
        task=lambda turn: f"{turn.backend} {turn.variant}",
        info=lambda _turn, samples: f"last {samples[0].value * 1000:.1f} ms",
    ).run(ctx)


def _one(ctx: RunContext, scenario: Scenario[Any], turn: Turn) -> dict[str, float]:
    """One start → READY → stop → remove; its timings in seconds, by metric name."""
    backend = ctx.backends[turn.backend]
    instance: Instance | None = None
    try:
        if turn.variant in (WARM, RESTORE):
            instance = ctx.create(turn.backend, scenario, turn.variant)  # before the clock
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


METRICS = (
    Metric("start_to_ready_s", "s", LOWER, Headline("start → READY")),
    Metric("stop_s", "s", LOWER, Headline(
        "stop → gone", note="until the last process exited; clean-up timed apart")),
    Metric("harness_s", "s", headline=Headline(
        "harness's share of a start", ratio=False,
        note="OCI backends: the start (warm: resume) call less the runtime's own command: "
             "config.json, bundle, overlay mount and unmount, launcher round trip; inside "
             "start → READY")),
    Metric("stop_harness_s", "s", headline=Headline(
        "harness's share of a stop", ratio=False,
        note="OCI backends: launcher round trips less the runtime's kill commands")),
    Metric("cleanup_harness_s", "s", headline=Headline(
        "harness's share of a clean-up", ratio=False,
        note="OCI backends: the removal less the runtime's delete command")),
    Metric("cleanup_s", "s", LOWER),
    # where a start's time went: said, not gated (the start itself is)
    Metric("start_call_s", "s"),
    Metric("ready_wait_s", "s"),
    Metric("createxml_s", "s"),
    # the backends' own phases of a cold start (Instance.phases: engine_start_s, ...)
    Metric("*_s", "s", LOWER),
)

KIND = Kind(
    "startup", "start → READY → stop, repeated, backends interleaved", StartupParams, run,
    METRICS, charts, captions={
        "start_to_ready_s": "start → READY per backend and variant: box (quartiles) and every "
                            "sample, p50/p95/p99 marked; log scale.",
        "stop_s": "stop → gone (until the last process exited) per backend and variant: box "
                  "and every sample, p50/p95/p99 marked; log scale.",
    })
