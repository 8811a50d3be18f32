"""The startup scenario: N times start → READY → stop, backends interleaved (A B, B A, ...).

Besides ``start_to_ready_s`` and ``stop_s``, each start is split where the backend's start
call returns: ``start_call_s`` (the request until the backend returned: for libvirt its
``createXML``, for ours the fork server's reply) and ``ready_wait_s`` (from there to READY),
plus whatever phases the backend timed itself (``Instance.phases``, e.g. ``createxml_s``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import metrics
from harness.backends.base import BackendError
from harness.kinds import rounds
from harness.params import param

if TYPE_CHECKING:
    import pandas as pd

    from harness.context import RunContext
    from harness.scenario import Scenario

MAX_CONSECUTIVE_FAILURES = 3


@dataclass(frozen=True)
class StartupParams:
    """The startup scenario's own keys."""

    repetitions: int = field(default=20, metadata=param(
        minimum=1, doc="measured start → READY → stop cycles per backend"))
    warmup: int = field(default=2, metadata=param(
        minimum=0, doc="unmeasured cycles per backend before the measured ones"))


def run(ctx: RunContext, scenario: Scenario[StartupParams], backend_names: tuple[str, ...]
        ) -> None:
    plans = {name: scenario.for_backend(name) for name in backend_names}
    cycles = {name: plan.params.warmup + plan.params.repetitions for name, plan in plans.items()}
    failures = dict.fromkeys(backend_names, 0)
    with ctx.progress() as progress:
        tasks = {
            name: progress.add_task(
                f"{scenario.name} {name}", total=plans[name].params.repetitions, info=""
            )
            for name in backend_names
        }
        for round_index in range(max(cycles.values(), default=0)):
            for name in rounds.order(backend_names, round_index):
                plan = plans[name]
                if round_index >= cycles[name] or failures[name] >= MAX_CONSECUTIVE_FAILURES:
                    continue
                repetition = round_index - plan.params.warmup
                try:
                    timings = _one(ctx, plan, name)
                except BackendError as error:
                    failures[name] += 1
                    ctx.note_failure(plan, name, f"repetition {repetition}: {error}")
                    continue
                failures[name] = 0
                if repetition < 0:
                    continue  # warm-up: caches, lazy imports, first-touch pages
                ctx.record([ctx.sample(plan, name, metric, value, "s", repetition=repetition)
                            for metric, value in timings.items()])
                progress.update(
                    tasks[name], advance=1,
                    info=f"last {timings['start_to_ready_s'] * 1000:.1f} ms",
                )
    ctx.writer.flush()


def _one(ctx: RunContext, scenario: Scenario[Any], name: str) -> dict[str, float]:
    """One start → READY → stop; its timings in seconds, by metric name."""
    backend = ctx.backends[name]
    started = metrics.now_ns()
    instance = ctx.start(name, scenario)
    called = metrics.now_ns()
    try:
        backend.wait_ready(instance, scenario.timeout_s)
        ready = metrics.now_ns()
    except BaseException:
        ctx.stop(name, instance)
        raise
    stopping = metrics.now_ns()
    backend.stop(instance)
    stop = metrics.seconds_since(stopping)
    ctx.untrack(name, instance)
    return {
        "start_to_ready_s": (ready - started) / 1e9,
        "stop_s": stop,
        "start_call_s": (called - started) / 1e9,
        "ready_wait_s": (ready - called) / 1e9,
        **instance.phases,
    }


def charts(samples: pd.DataFrame, scenario: str, output: Path) -> list[Path]:
    """The start → READY and the stop distributions per backend."""
    from harness.charts import latency_chart

    return [*latency_chart(samples, scenario, "start_to_ready_s", output),
            *latency_chart(samples, scenario, "stop_s", output)]
