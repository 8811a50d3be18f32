"""The startup scenario: N times start → READY → stop, backends interleaved (A B A B)."""

from __future__ import annotations

from harness import metrics
from harness.backends.base import BackendError
from harness.context import RunContext
from harness.scenario import Scenario

MAX_CONSECUTIVE_FAILURES = 3


def run(ctx: RunContext, scenario: Scenario, backend_names: tuple[str, ...]) -> None:
    plans = {name: scenario.for_backend(name) for name in backend_names}
    rounds = max(p.warmup + p.repetitions for p in plans.values())
    failures = dict.fromkeys(backend_names, 0)
    with ctx.progress() as progress:
        tasks = {
            name: progress.add_task(
                f"{scenario.name} {name}", total=plans[name].repetitions, info=""
            )
            for name in backend_names
        }
        for round_index in range(rounds):
            order = backend_names if round_index % 2 == 0 else backend_names[::-1]
            for name in order:
                plan = plans[name]
                if round_index >= plan.warmup + plan.repetitions:
                    continue
                if failures[name] >= MAX_CONSECUTIVE_FAILURES:
                    continue
                repetition = round_index - plan.warmup
                try:
                    start_to_ready, stop = _one(ctx, plan, name)
                except BackendError as error:
                    failures[name] += 1
                    ctx.note_failure(plan, name, f"repetition {repetition}: {error}")
                    continue
                failures[name] = 0
                if repetition < 0:
                    continue  # warm-up: caches, lazy imports, first-touch pages
                ctx.record(
                    [
                        ctx.sample(plan, name, "start_to_ready_s", start_to_ready, "s",
                                   repetition=repetition),
                        ctx.sample(plan, name, "stop_s", stop, "s", repetition=repetition),
                    ]
                )
                progress.update(
                    tasks[name], advance=1, info=f"last {start_to_ready * 1000:.1f} ms"
                )
    ctx.writer.flush()


def _one(ctx: RunContext, scenario: Scenario, name: str) -> tuple[float, float]:
    """One start → READY → stop; returns (start_to_ready_s, stop_s)."""
    backend = ctx.backends[name]
    started = metrics.now_ns()
    instance = ctx.start(name, scenario)
    try:
        backend.wait_ready(instance, scenario.timeout_s)
        start_to_ready = metrics.seconds_since(started)
    except BaseException:
        ctx.stop(name, instance)
        raise
    stopping = metrics.now_ns()
    backend.stop(instance)
    stop = metrics.seconds_since(stopping)
    ctx.untrack(name, instance)
    return start_to_ready, stop
