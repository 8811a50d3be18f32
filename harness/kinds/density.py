"""The density scenario: ramp up live instances until a limit, recording every step.

Each backend ramps on its own (instances of two backends never share the host): start a batch,
wait for every READY, record launch latency and host memory, repeat until ``max_instances``,
the ``min_mem_available_mib`` floor or ``time_limit_s``; then tear all down and time it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import metrics
from harness.backends.base import BackendError, Instance
from harness.params import param

if TYPE_CHECKING:
    import pandas as pd

    from harness.context import RunContext
    from harness.scenario import Scenario

MIB = 1024 * 1024


@dataclass(frozen=True)
class DensityParams:
    """The density scenario's own keys."""

    max_instances: int = field(default=100, metadata=param(
        minimum=1, doc="the ramp stops once this many instances are alive"))
    batch_size: int = field(default=1, metadata=param(
        minimum=1, doc="instances started together at each step"))
    min_mem_available_mib: int = field(default=2048, metadata=param(
        minimum=0, doc="the ramp stops once host MemAvailable falls below this"))
    time_limit_s: float = field(default=600.0, metadata=param(
        minimum=0.001, doc="the ramp stops once it has run this long"))


def run(ctx: RunContext, scenario: Scenario[DensityParams], backend_names: tuple[str, ...]
        ) -> None:
    summary = ctx.writer.metadata.setdefault("density", {})
    for name in backend_names:
        plan = scenario.for_backend(name)
        summary.setdefault(plan.name, {})[name] = _ramp(ctx, plan, name)
        ctx.writer.flush()
        ctx.writer.write_metadata()


def _stop_reason(
    params: DensityParams, alive: int, began: float, host: metrics.HostMemory
) -> str | None:
    """Why the ramp ends now (``host`` is the reading taken after the last step), or None."""
    if alive >= params.max_instances:
        return "max_instances"
    if time.monotonic() - began >= params.time_limit_s:
        return "time_limit"
    if host.mem_available < params.min_mem_available_mib * MIB:
        return "memory_floor"
    return None


def _ramp(ctx: RunContext, plan: Scenario[DensityParams], name: str) -> dict[str, Any]:
    params = plan.params
    live: list[Instance] = []
    baseline = host = metrics.host_memory()
    began = time.monotonic()
    step = 0
    with ctx.progress() as progress:
        task = progress.add_task(f"{plan.name} {name}", total=params.max_instances, info="")
        while (reason := _stop_reason(params, len(live), began, host)) is None:
            step += 1
            batch = min(params.batch_size, params.max_instances - len(live))
            try:
                batch_s = _launch_batch(ctx, plan, name, batch, live)
            except BackendError as error:
                reason = f"failure: {error}"
                ctx.note_failure(plan, name, f"launch at {len(live)} alive: {error}")
                break
            host = metrics.host_memory()
            readings = {
                "batch_launch_s": (batch_s, "s"),
                "launch_s": (batch_s / batch, "s"),
                "instances_alive": (len(live), "count"),
                "host_mem_used_bytes": (baseline.mem_available - host.mem_available, "bytes"),
                **host.as_metrics(),
            }
            ctx.record([ctx.sample(plan, name, metric, value, unit, step=step)
                        for metric, (value, unit) in readings.items()])
            rate = len(live) / max(time.monotonic() - began, 1e-9)
            progress.update(
                task,
                completed=len(live),
                info=f"{rate:.0f}/s, {host.mem_available / MIB / 1024:.1f} GiB available",
            )
        alive = len(live)
        teardown = _teardown(ctx, name, live)
    ctx.record([
        ctx.sample(plan, name, "teardown_s", teardown, "s"),
        ctx.sample(plan, name, "max_instances_alive", alive, "count"),
    ])
    return {"stopped_by": reason, "instances": alive, "teardown_s": round(teardown, 3)}


def _launch_batch(
    ctx: RunContext, plan: Scenario[DensityParams], name: str, batch: int, live: list[Instance]
) -> float:
    """Start ``batch`` instances, then wait for each; the batch's start→all-READY time.

    ``launch_s`` (this divided by the batch size) is the per-instance launch cost at the
    step's density: with batches, instances boot concurrently, so one instance's own
    start→READY would count its neighbours' work.
    """
    backend = ctx.backends[name]
    started: list[Instance] = []
    begin = metrics.now_ns()
    try:
        for _ in range(batch):
            instance = ctx.start(name, plan)
            live.append(instance)
            started.append(instance)
        for instance in started:
            backend.wait_ready(instance, plan.timeout_s)
        return metrics.seconds_since(begin)
    except BackendError:
        del live[len(live) - len(started):]  # a half-started batch is not part of the ramp
        ctx.stop_all(name, started)
        raise


def _teardown(ctx: RunContext, name: str, live: list[Instance]) -> float:
    begin = metrics.now_ns()
    ctx.stop_all(name, live)
    return metrics.seconds_since(begin)


def charts(samples: pd.DataFrame, scenario: str, output: Path) -> list[Path]:
    """Instances alive vs host memory used, and launch latency vs instances alive."""
    from harness.charts import plain_numbers, plt, save

    data = samples[samples.scenario == scenario]
    if data.empty:
        return []
    figure, (memory_axis, latency_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for series, group in data.groupby("series", sort=False):
        steps = group.pivot_table(index="step", columns="metric", values="value")
        if {"instances_alive", "host_mem_used_bytes"} <= set(steps.columns):
            used = steps.host_mem_used_bytes / MIB
            positive = used > 0  # the first steps can read below the baseline: noise
            memory_axis.plot(steps.instances_alive[positive], used[positive], marker=".",
                             label=series)
        if {"instances_alive", "launch_s"} <= set(steps.columns):
            latency_axis.plot(steps.instances_alive, steps.launch_s * 1000, marker=".",
                              label=series)
    memory_axis.set_xlabel("instances alive (log scale)")
    memory_axis.set_ylabel("host memory used (MiB, log scale)")
    memory_axis.set_xscale("log")
    memory_axis.set_yscale("log")
    memory_axis.set_title(f"{scenario}: host memory vs instances")
    latency_axis.set_xlabel("instances alive")
    latency_axis.set_ylabel("launch time per instance (ms, log scale)")
    latency_axis.set_yscale("log")
    latency_axis.set_title(f"{scenario}: launch latency vs instances")
    for axis in (memory_axis, latency_axis):
        axis.grid(alpha=0.3, which="both")
        axis.legend()
        plain_numbers(axis)
    return save(figure, output, f"{scenario}-density")
