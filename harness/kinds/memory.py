"""The memory scenario: K idle instances, settled, then per-instance footprint by three views.

Views: host MemAvailable delta / K; PSS (and USS) of each instance's host processes; the
backend's own accounting (cgroup usage for containers, QEMU overhead excluding guest RAM for
VMs). VMs are measured with KSM off and, if the scenario asks, on.
"""

from __future__ import annotations

import time

from harness import metrics
from harness.backends.base import BackendError, Instance
from harness.context import CONTAINER_BACKENDS, RunContext
from harness.scenario import Scenario


def run(ctx: RunContext, scenario: Scenario, backend_names: tuple[str, ...]) -> None:
    for name in backend_names:
        plan = scenario.for_backend(name)
        modes = plan.ksm if name not in CONTAINER_BACKENDS else ("off",)
        for mode in modes:
            try:
                _measure(ctx, plan, name, ksm_on=(mode == "on"))
            except BackendError as error:
                ctx.note_failure(plan, name, f"ksm={mode}: {error}")
            ctx.writer.flush()


def _measure(ctx: RunContext, plan: Scenario, name: str, ksm_on: bool) -> None:
    backend = ctx.backends[name]
    variant = f"ksm={'on' if ksm_on else 'off'}"
    ksm_before, scan_before = metrics.ksm_running(), metrics.ksm_scan_pages()
    if ksm_before != ksm_on:
        metrics.set_ksm(ksm_on)
    live: list[Instance] = []
    try:
        time.sleep(1.0)  # let the previous backend's teardown settle before the baseline
        before = metrics.settled_mem_available()
        with ctx.progress() as progress:
            task = progress.add_task(f"{plan.name} {name} {variant}", total=plan.instances,
                                     info="")
            for _ in range(plan.instances):
                instance = ctx.start(name, plan)
                live.append(instance)
                backend.wait_ready(instance, plan.timeout_s)
                progress.advance(task)
        time.sleep(plan.settle_s)  # deliberate idle period, so lazy allocations show up
        after = metrics.settled_mem_available()
        samples = [
            ctx.sample(plan, name, "mem_host_delta_per_instance_bytes",
                       (before - after) / len(live), "bytes", variant=variant),
            ctx.sample(plan, name, "ksm_pages_sharing", metrics.host_memory().ksm_pages_sharing,
                       "pages", variant=variant),
        ]
        for index, instance in enumerate(live):
            for metric, value in backend.memory(instance).as_metrics().items():
                samples.append(ctx.sample(plan, name, metric, value, "bytes",
                                          instance=str(index + 1), variant=variant))
        ctx.record(samples)
    finally:
        for instance in live:
            backend.stop(instance)
            ctx.untrack(name, instance)
        if metrics.ksm_running() != ksm_before:
            metrics.set_ksm(ksm_before)
            metrics.set_ksm_scan_pages(scan_before)
