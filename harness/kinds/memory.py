"""The memory scenario: K idle instances, settled, then per-instance footprint by three views.

Views: host MemAvailable delta / K (and, steadier, the delta of the memory the kernel and
processes account for: slab, kernel stacks, page tables, per-cpu, anonymous and shared
memory); PSS (and USS) of each instance's host processes; the backend's own accounting
(cgroup usage for containers, QEMU overhead excluding guest RAM for VMs). VMs are measured
with KSM off and, if the scenario asks, on. The host delta is also itemised from kernel
counters (``mem_item_<item>_bytes``, :mod:`harness.memory_items`: anonymous pages, page
tables, kernel stacks, per-CPU data, slab caches by owner), charted as stacked bars.

The kernel keeps the slab pages that freed namespaces, mounts and cgroups leave behind, so the
first backend measured would pay for growing them and the next ones reuse them
(docs/findings/memory-slab-state.md). So every backend first runs
``warmup`` unmeasured passes (K instances up, then down) before any backend is measured, and
each measured pass takes the turns (a backend with one KSM mode) in an order shuffled from
the run's seed (the position goes with the samples): the round loop,
:class:`harness.kinds.rounds.Rounds`, with its failure path. Every reading waits for the
host's memory to settle first (the frees of the previous pass finish asynchronously): that is
the settling between backends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness import memory_items, metrics
from harness.backends import registry
from harness.backends.base import Instance
from harness.kinds import rounds
from harness.kinds.base import LOWER, Headline, Kind, Metric
from harness.params import param
from hostkit import validate

if TYPE_CHECKING:
    import pandas as pd

    from harness.context import RunContext
    from harness.results import Sample
    from harness.scenario import Scenario

MIB = 1024 * 1024
KSM_MODES = ("off", "on")
PER_PASS = "one value per pass"
PER_INSTANCE = "per instance"
METRICS = (  # the headline's, in its order, first: the per-instance views
    Metric("mem_host_delta_per_instance_bytes", "bytes", LOWER, Headline(
        "host MemAvailable delta / K", tail=False, note=PER_PASS)),
    Metric("mem_host_accounted_per_instance_bytes", "bytes", LOWER, Headline(
        "host kernel + process memory delta / K", tail=False, note=PER_PASS)),
    Metric("mem_pss_bytes", "bytes", LOWER, Headline("PSS of its processes", note=PER_INSTANCE)),
    Metric("mem_cgroup_bytes", "bytes", LOWER, Headline("cgroup usage", note=PER_INSTANCE)),
    Metric("mem_vmm_overhead_bytes", "bytes", LOWER, Headline(
        "QEMU overhead (guest RAM excluded)", note=PER_INSTANCE)),
    Metric("mem_uss_bytes", "bytes", LOWER),
    Metric("mem_rss_bytes", "bytes", LOWER),
    Metric("mem_guest_ram_bytes", "bytes", LOWER),
    # The itemised kernel memory partitions the host delta, which is gated: the items are
    # said, not gated. Each is a difference of two host-wide counters over one pass, and the
    # small ones swing by several times from run to run (slab reclaim), which no useful
    # threshold could ride over.
    Metric("mem_item_*_bytes", "bytes"),
    Metric("ksm_pages_sharing", "pages", host_reading=True, input=True),
)
# the per-instance views the chart shows, with their labels
VIEWS = {m.name: m.headline.label for m in METRICS if m.headline is not None}


@dataclass(frozen=True)
class MemoryParams:
    """The memory scenario's own keys."""

    instances: int = field(default=10, metadata=param(
        minimum=1, maximum=validate.MAX_COUNT, doc="K: idle instances measured together"))
    settle_s: float = field(default=5.0, metadata=param(
        bounds=validate.DURATION_S, doc="idle time between the last READY and the reading"))
    ksm: tuple[str, ...] = field(default=("off",), metadata=param(
        choices=KSM_MODES, doc="KSM modes each VM pass is measured with (containers: off)"))
    warmup: int = field(default=2, metadata=param(
        minimum=0, maximum=validate.MAX_ROUNDS,
        doc="unmeasured passes per backend before any backend is measured"))
    passes: int = field(default=1, metadata=param(
        minimum=1, maximum=validate.MAX_ROUNDS,
        doc="measured passes per backend, the backends' order shuffled each pass"))


@dataclass(frozen=True)
class Turn:
    """One backend measured with KSM on or off (containers: off)."""

    backend: str
    ksm: str


def run(ctx: RunContext, scenario: Scenario[MemoryParams], backend_names: tuple[str, ...]
        ) -> None:
    plans = {name: scenario.for_backend(name) for name in backend_names}
    memory_items.note_empty_cgroup(ctx.writer.metadata, backend_names)
    all_turns = [Turn(name, mode) for name, plan in plans.items()
                 for mode in _modes(plan, name)]

    def measure(turn: Turn, slot: rounds.Slot) -> list[Sample]:
        plan = plans[turn.backend]
        if not slot.warmup:
            return _measure(ctx, plan, turn.backend, ksm_on=(turn.ksm == "on"),
                            repetition=slot.repetition, position=slot.position, note=slot.note)
        if turn.ksm == _modes(plan, turn.backend)[0]:  # one warm-up pass per backend
            _start_all_then_stop(ctx, plan, turn.backend)
        return []

    rounds.Rounds(
        scenario.name, plans,
        {name: rounds.Schedule(plan.params.warmup, plan.params.passes)
         for name, plan in plans.items()},  # settling: each reading waits for the host's
        all_turns, measure, what=lambda turn: f"ksm={turn.ksm}",
    ).run(ctx)


def _modes(plan: Scenario[MemoryParams], name: str) -> tuple[str, ...]:
    """The KSM modes ``name`` is measured with: the scenario's for a VM, off otherwise."""
    return plan.params.ksm if registry.family(name) == registry.VM else ("off",)


def _start_ready(
    ctx: RunContext, plan: Scenario[MemoryParams], name: str, live: list[Instance],
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Start K instances one after another, each up to READY, appending them to ``live``."""
    for _ in range(plan.params.instances):
        instance = ctx.start(name, plan)
        live.append(instance)
        ctx.backends[name].wait_ready(instance, plan.timeout_s)
        if on_ready:
            on_ready()


def _start_all_then_stop(ctx: RunContext, plan: Scenario[MemoryParams], name: str) -> None:
    """An unmeasured pass: K instances up and READY, then all stopped."""
    live: list[Instance] = []
    try:
        _start_ready(ctx, plan, name, live)
    finally:
        ctx.stop_all(name, live)


def _measure(
    ctx: RunContext, plan: Scenario[MemoryParams], name: str, ksm_on: bool, repetition: int,
    position: int = 0, note: Callable[[str], None] = lambda _text: None,
) -> list[Sample]:
    backend = ctx.backends[name]
    variant = f"ksm={'on' if ksm_on else 'off'}"
    ksm_before, scan_before = metrics.ksm_running(), metrics.ksm_scan_pages()
    if ksm_before != ksm_on:
        metrics.set_ksm(ksm_on)
    live: list[Instance] = []
    try:
        before = metrics.settled_memory_level()  # after the last teardown's frees finished
        counters_before = memory_items.read()
        _start_ready(ctx, plan, name, live,
                     on_ready=lambda: note(f"{variant}: {len(live)} of {plan.params.instances} up"))
        time.sleep(plan.params.settle_s)  # deliberate idle period, so lazy allocations show up
        after = metrics.settled_memory_level()
        items = memory_items.itemise(counters_before, memory_items.read(), len(live))
        samples: list[Sample] = [
            *(ctx.sample(plan, name, f"mem_item_{item}_bytes", value, "bytes", variant=variant,
                         repetition=repetition, position=position)
              for item, value in items.items()),
            ctx.sample(plan, name, "mem_host_delta_per_instance_bytes",
                       (before.available - after.available) / len(live), "bytes",
                       variant=variant, repetition=repetition, position=position),
            ctx.sample(plan, name, "mem_host_accounted_per_instance_bytes",
                       (after.accounted - before.accounted) / len(live), "bytes",
                       variant=variant, repetition=repetition, position=position),
            ctx.sample(plan, name, "ksm_pages_sharing", metrics.host_memory().ksm_pages_sharing,
                       "pages", variant=variant, repetition=repetition, position=position),
        ]
        for index, instance in enumerate(live):
            for metric, value in backend.memory(instance).as_metrics().items():
                samples.append(ctx.sample(plan, name, metric, value, "bytes",
                                          instance=str(index + 1), variant=variant,
                                          repetition=repetition, position=position))
    finally:
        ctx.stop_all(name, live)
        if metrics.ksm_running() != ksm_before:
            metrics.set_ksm(ksm_before)
            metrics.set_ksm_scan_pages(scan_before)
    return samples


def charts(samples: pd.DataFrame, scenario: str, output: Path) -> list[Path]:
    """Bars of the median per-instance memory by each view, per backend and KSM variant; one
    panel per family on a linear MiB axis (a container's MiB beside a VM's hundreds would
    vanish), medians at or below zero drawn below the axis line and labelled as noise."""
    import numpy as np

    from harness.charts import accel_text, family_groups, plt, save, variant_text

    data = samples[(samples.scenario == scenario) & samples.metric.isin(VIEWS)].copy()
    if data.empty:
        return []
    data["label"] = data.series + "\n" + data.variant.map(variant_text)
    families = family_groups(data)
    widths = [max(4.0, 1.3 * members.label.nunique() + 2) for _, members in families]
    figure, axes = plt.subplots(1, len(families), figsize=(sum(widths) + 1, 5), squeeze=False,
                                gridspec_kw={"width_ratios": widths})
    for (_, members), axis in zip(families, axes[0], strict=True):
        medians = members.groupby(["label", "metric"], sort=False).value.median() \
            .unstack("metric")
        views = [m for m in VIEWS if m in medians.columns]
        width = 0.8 / len(views)
        positions = np.arange(len(medians))
        for offset, metric in enumerate(views):
            values = medians[metric] / MIB
            noise = values <= 0
            bars = axis.bar(positions + offset * width, values.fillna(0), width,
                            label=VIEWS[metric], color=f"C{offset}",
                            hatch=["//" if n else "" for n in noise])
            labels = ["" if np.isnan(v) else (f"{v:.3g} (≤ 0: noise)" if v <= 0 else f"{v:.3g}")
                      for v in values]
            axis.bar_label(bars, labels, fontsize=7, rotation=90, padding=2)
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set_xticks(positions + width * (len(views) - 1) / 2, medians.index, fontsize=8)
        axis.set_ylabel("MiB per instance (median, linear)")
        axis.set_title(f"{scenario}: memory per instance, MiB\n{accel_text(members)}",
                       fontsize=10)
        axis.margins(y=0.25)
        axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return [*save(figure, output, f"{scenario}-memory"), *_items_chart(samples, scenario, output)]


def _items_chart(samples: pd.DataFrame, scenario: str, output: Path) -> list[Path]:
    """Stacked bars: the host delta per instance itemised from kernel counters."""
    from harness.charts import plt, save, variant_text

    parts = [item for item in memory_items.ITEMS if item not in memory_items.TOTALS]
    metrics_ = {f"mem_item_{item}_bytes": item for item in parts}
    data = samples[(samples.scenario == scenario) & samples.metric.isin(metrics_)].copy()
    if data.empty:
        return []
    data["label"] = data.series + "\n" + data.variant.map(variant_text)
    medians = (data.groupby(["label", "metric"], sort=False).value.median()
               .unstack("metric").fillna(0) / 1024)
    figure, axis = plt.subplots(figsize=(max(7, 1.3 * len(medians) + 4), 4.5))
    bottom = None
    for metric, item in metrics_.items():
        if metric not in medians.columns:
            continue
        values = medians[metric].clip(lower=0)
        axis.bar(medians.index, values, bottom=bottom, label=memory_items.LABELS.get(item, item))
        bottom = values if bottom is None else bottom + values
    axis.set_ylabel("KiB per instance")
    axis.set_title(f"{scenario}: host memory per instance, itemised (kernel counters)")
    axis.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axis.tick_params(axis="x", rotation=15)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return save(figure, output, f"{scenario}-memory-items")


KIND = Kind(
    "memory", "per-instance memory of K idle instances, by several views", MemoryParams, run,
    METRICS, charts, captions={
        "memory": "memory per instance by each view, median per backend and KSM variant, one "
                  "panel per family on a linear MiB axis; hatched bars at or below zero are "
                  "noise.",
    })
