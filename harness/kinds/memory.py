"""The memory scenario: K idle instances, settled, then per-instance footprint by three views.

Views: host MemAvailable delta / K (and, steadier, the delta of the memory the kernel and
processes account for: slab, kernel stacks, page tables, per-cpu, anonymous and shared
memory); PSS (and USS) of each instance's host processes; the backend's own accounting
(cgroup usage for containers, QEMU overhead excluding guest RAM for VMs). VMs are measured
with KSM off and, if the scenario asks, on.

The kernel keeps the slab pages that freed namespaces, mounts and cgroups leave behind, so the
first backend measured would pay for growing them and the next ones reuse them (seen: the same
runtime measured 1.2 MiB per container first, 0.9 MiB second). So every backend first runs
``warmup`` unmeasured passes (K instances up, then down) before any backend is measured, and
the ``passes`` measured passes alternate the backends' order (A B, B A, ...).
"""

from __future__ import annotations

import time

from harness import metrics
from harness.backends import registry
from harness.backends.base import BackendError, Instance
from harness.context import RunContext
from harness.scenario import Scenario


def run(ctx: RunContext, scenario: Scenario, backend_names: tuple[str, ...]) -> None:
    plans = {name: scenario.for_backend(name) for name in backend_names}
    failed: set[str] = set()
    for name, plan in plans.items():
        try:
            for _ in range(plan.warmup):
                _start_all_then_stop(ctx, plan, name)
        except BackendError as error:
            failed.add(name)
            ctx.note_failure(plan, name, f"warm-up: {error}")
    for index in range(max(plan.passes for plan in plans.values())):
        order = backend_names if index % 2 == 0 else backend_names[::-1]
        for name in order:
            plan = plans[name]
            if name in failed or index >= plan.passes:
                continue
            modes = plan.ksm if registry.family(name) == registry.VM else ("off",)
            for mode in modes:
                try:
                    _measure(ctx, plan, name, ksm_on=(mode == "on"), repetition=index)
                except BackendError as error:
                    failed.add(name)
                    ctx.note_failure(plan, name, f"ksm={mode}: {error}")
            ctx.writer.flush()


def _start_ready(
    ctx: RunContext, plan: Scenario, name: str, live: list[Instance], on_ready=None
) -> None:
    """Start K instances one after another, each up to READY, appending them to ``live``."""
    for _ in range(plan.instances):
        instance = ctx.start(name, plan)
        live.append(instance)
        ctx.backends[name].wait_ready(instance, plan.timeout_s)
        if on_ready:
            on_ready()


def _start_all_then_stop(ctx: RunContext, plan: Scenario, name: str) -> None:
    """An unmeasured pass: K instances up and READY, then all stopped."""
    live: list[Instance] = []
    try:
        _start_ready(ctx, plan, name, live)
    finally:
        ctx.stop_all(name, live)


def _measure(
    ctx: RunContext, plan: Scenario, name: str, ksm_on: bool, repetition: int
) -> None:
    backend = ctx.backends[name]
    variant = f"ksm={'on' if ksm_on else 'off'}"
    ksm_before, scan_before = metrics.ksm_running(), metrics.ksm_scan_pages()
    if ksm_before != ksm_on:
        metrics.set_ksm(ksm_on)
    live: list[Instance] = []
    try:
        before = metrics.settled_memory_level()  # after the last teardown's frees finished
        with ctx.progress() as progress:
            task = progress.add_task(f"{plan.name} {name} {variant}", total=plan.instances,
                                     info="")
            _start_ready(ctx, plan, name, live, on_ready=lambda: progress.advance(task))
        time.sleep(plan.settle_s)  # deliberate idle period, so lazy allocations show up
        after = metrics.settled_memory_level()
        samples = [
            ctx.sample(plan, name, "mem_host_delta_per_instance_bytes",
                       (before.available - after.available) / len(live), "bytes",
                       variant=variant, repetition=repetition),
            ctx.sample(plan, name, "mem_host_accounted_per_instance_bytes",
                       (after.accounted - before.accounted) / len(live), "bytes",
                       variant=variant, repetition=repetition),
            ctx.sample(plan, name, "ksm_pages_sharing", metrics.host_memory().ksm_pages_sharing,
                       "pages", variant=variant, repetition=repetition),
        ]
        for index, instance in enumerate(live):
            for metric, value in backend.memory(instance).as_metrics().items():
                samples.append(ctx.sample(plan, name, metric, value, "bytes",
                                          instance=str(index + 1), variant=variant,
                                          repetition=repetition))
        ctx.record(samples)
    finally:
        ctx.stop_all(name, live)
        if metrics.ksm_running() != ksm_before:
            metrics.set_ksm(ksm_before)
            metrics.set_ksm_scan_pages(scan_before)
