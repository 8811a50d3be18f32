"""The density scenario: ramp up live instances until a limit, recording every step.

Each backend ramps on its own (instances of two backends never share the host), after the
host's memory has settled from the previous ramp. The ramps go through the one round loop
(:class:`harness.kinds.rounds.Rounds`, a ramp per backend per round): with ``ramps`` > 1
every backend ramps that many times, in the mirrored order: the seeded order of the backends,
then the same reversed, then forward again (A B C C B A A B C ...), so each backend's k-th
ramp sits at mirrored positions and none always follows the same neighbour (the kernel's slab
caches carry one ramp's history into the next). Every sample of a ramp carries its index in
``repetition`` (0: the backend's first ramp of the run) and its turn in the whole sequence in
``position``. Every backend is launched alike: first one unmeasured warm-up batch (up and
down), then batches of ``batch_size`` instances started concurrently (one thread per instance
of the batch) and awaited until every one printed READY; after each batch the launch time and
host memory are recorded, until ``max_instances``, the ``min_mem_available_mib`` floor or
``time_limit_s`` (why each ramp stopped is in the run's metadata, ``density.<scenario>.
<backend>``, one entry per ramp, and in the report). Then every instance is stopped and
removed, each one timed (``teardown_s``, one sample per instance; ``instance`` is the order of
the stops, 1 for the newest, stopped first while the ramp's top count was alive). A failed
launch ends the ramp there (``stopped_by``: the failure; what it recorded is kept), a failed
warm-up batch ends it before it began, and either is, as a failed turn of any kind, a line of
the run's failures that marks the run incomplete (a backend whose ramps fail three times in a
row is given up).

Backends are compared at matched live counts (:data:`LEVELS`, :func:`at_live`): a figure over
a whole ramp would compare different ranges whenever two backends stopped at different
counts. Each ramp's metadata entry has, at every level it reached, the median launch time per
instance of the batches launched just below the level and the host memory per instance there.

The harness's own cost is recorded at every step too: ``harness_cpu_per_launch_s``, the user
CPU time (all threads) this process spent per launched instance during the step: the
harness's Python work and the backend adapter's (for ``ours`` the runtime library, which runs
in this process, is included; fork servers, launched instances and daemons are not), so a ramp
shows whether the harness's per-launch work grows with the number alive (it must not: nothing
on the launch path scans the live instances). The kernel time of this process's system calls
(for ``ours``: making the cgroups) is ``harness_sys_per_launch_s``. The progress line shows
the rate, host memory available and memory used per instance.
"""

from __future__ import annotations

import gc
import itertools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import memory_items, metrics
from harness.backends.base import BackendError, Instance
from harness.kinds import rounds
from harness.kinds.base import HIGHER, LOWER, Headline, Kind, Metric
from harness.params import param
from hostkit import validate

if TYPE_CHECKING:
    import pandas as pd

    from harness.context import RunContext
    from harness.results import Sample
    from harness.scenario import Scenario

MIB = 1024 * 1024
LEVELS = (1_000, 5_000, 10_000)  # live counts at which backends are compared
BAND = 10  # launch "at N live": the batches launched between N - N/BAND and N live
RAMP_STYLES = ("-", "--", ":", "-.")  # the charts' line style of each ramp of a backend
# Host memory per instance: the slope of host_mem_used_bytes over instances_alive, one value
# per ramp; the report derives it from the steps (harness.report.headline.with_derived).
SLOPE_METRIC = "host_mem_per_instance_bytes"


@dataclass(frozen=True)
class DensityParams:
    """The density scenario's own keys."""

    max_instances: int = field(default=100, metadata=param(
        minimum=1, maximum=validate.MAX_COUNT,
        doc="the ramp stops once this many instances are alive"))
    batch_size: int = field(default=1, metadata=param(
        minimum=1, maximum=validate.MAX_COUNT,
        doc="instances started together (concurrently) at each step"))
    min_mem_available_mib: int = field(default=2048, metadata=param(
        minimum=0, maximum=validate.MAX_MEMORY_MIB,
        doc="the ramp stops once host MemAvailable falls below this"))
    time_limit_s: float = field(default=600.0, metadata=param(
        minimum=0.001, maximum=validate.DAY_S, doc="the ramp stops once it has run this long"))
    warmup_batch: bool = field(default=True, metadata=param(
        doc="one unmeasured batch, up and down, before the ramp"))
    idle_cpu_s: float = field(default=0.0, metadata=param(
        bounds=validate.DURATION_S,
        doc="after the ramp, measure each instance's CPU use while idle over this "
            "many seconds (0: not measured)"))
    ksm: str = field(default="host", metadata=param(
        choices=("host", "on", "off"), doc="KSM during the ramp: as the host has it, on or off"))
    ramps: int = field(default=1, metadata=param(
        minimum=1, maximum=validate.MAX_COUNT,
        doc="ramps per backend, interleaved (A B B A ...): each backend's k-th ramp "
            "at mirrored positions"))


def run(ctx: RunContext, scenario: Scenario[DensityParams], backend_names: tuple[str, ...]
        ) -> None:
    summary = ctx.writer.metadata.setdefault("density", {})
    memory_items.note_empty_cgroup(ctx.writer.metadata, backend_names)
    plans = {name: scenario.for_backend(name) for name in backend_names}
    total = sum(plan.params.ramps for plan in plans.values())
    sequence = itertools.count()  # each ramp's turn in the whole sequence
    last: dict[str, str] = {}  # backend -> how its last ramp ended, for its progress line

    with ThreadPoolExecutor(max_workers=max(
            plan.params.batch_size for plan in plans.values()),
            thread_name_prefix="cvbench-launch") as pool:

        def measure(turn: RampTurn, slot: rounds.Slot) -> list[Sample]:
            plan = plans[turn.backend]
            metrics.settled_memory_level()  # the previous ramp's frees have finished
            place = Turn(slot.repetition, next(sequence), total)
            entry, failure = _ramp(ctx, plan, turn.backend, place, pool, slot.note)
            summary.setdefault(plan.name, {}).setdefault(turn.backend, []).append(entry)
            ctx.writer.write_metadata()
            last[turn.backend] = f"{entry['instances']} alive, {entry['stopped_by']}"
            if failure is not None:
                raise failure  # the round loop's one failure path: a line, run incomplete
            return []  # every step was recorded as the ramp went

        rounds.Rounds(
            scenario.name, plans,
            {name: rounds.Schedule(0, plan.params.ramps) for name, plan in plans.items()},
            [RampTurn(name) for name in backend_names], measure, what=lambda _turn: "ramp",
            info=lambda turn, _samples: last.get(turn.backend, ""), mirrored=True,
        ).run(ctx)


@dataclass(frozen=True)
class RampTurn:
    """A backend's turn to ramp."""

    backend: str


@dataclass(frozen=True)
class Turn:
    """One ramp's place: the backend's ramp index (0 first) and its turn in the sequence."""

    ramp: int
    position: int
    of: int  # turns in the sequence


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


def _ramp(ctx: RunContext, plan: Scenario[DensityParams], name: str, turn: Turn,
          pool: ThreadPoolExecutor, note: Callable[[str], None]
          ) -> tuple[dict[str, Any], BackendError | None]:
    """One ramp, up and down: its metadata entry, and the failure that ended it, if one did."""
    ksm_before = metrics.ksm_running()
    wanted = {"on": True, "off": False}.get(plan.params.ksm)
    if wanted is not None and wanted != ksm_before:
        scan_before = metrics.ksm_scan_pages()
        metrics.set_ksm(wanted)
        try:
            return _ramp_with(ctx, plan, name, turn, pool, note)
        finally:
            metrics.set_ksm(ksm_before)
            metrics.set_ksm_scan_pages(scan_before)
    return _ramp_with(ctx, plan, name, turn, pool, note)


def _ramp_with(ctx: RunContext, plan: Scenario[DensityParams], name: str, turn: Turn,
               pool: ThreadPoolExecutor, note: Callable[[str], None]
               ) -> tuple[dict[str, Any], BackendError | None]:
    params = plan.params
    tags = {"repetition": turn.ramp, "position": turn.position}
    uptime_s = _uptime_s()
    live: list[Instance] = []
    if params.warmup_batch:
        try:
            launch_batch(ctx, plan, name, min(params.batch_size, params.max_instances), live,
                         pool)
        except BackendError as error:
            raise BackendError(f"warm-up batch: {error}") from error
        finally:
            teardown(ctx, name, live)
        metrics.settled_memory_level()
    baseline = host = metrics.host_memory()
    began = time.monotonic()
    step = 0
    steps: list[tuple[int, float, float, int]] = []  # alive, launch_s, harness CPU, bytes used
    failure: BackendError | None = None
    while (reason := _stop_reason(params, len(live), began, host)) is None:
        step += 1
        batch = min(params.batch_size, params.max_instances - len(live))
        cpu_before = os.times()
        try:
            batch_s = launch_batch(ctx, plan, name, batch, live, pool)
        except BackendError as error:
            reason = f"failure: {error}"
            failure = BackendError(f"launch at {len(live)} alive: {error}")
            break
        cpu_after = os.times()
        harness_cpu_s = (cpu_after.user - cpu_before.user) / batch
        harness_sys_s = (cpu_after.system - cpu_before.system) / batch
        host = metrics.host_memory()
        used = baseline.mem_available - host.mem_available
        readings = {
            "batch_launch_s": (batch_s, "s"),
            "launch_s": (batch_s / batch, "s"),
            "harness_cpu_per_launch_s": (harness_cpu_s, "s"),
            "harness_sys_per_launch_s": (harness_sys_s, "s"),
            "instances_alive": (len(live), "count"),
            "host_mem_used_bytes": (used, "bytes"),
            **host.as_metrics(),
        }
        ctx.record([ctx.sample(plan, name, metric, value, unit, step=step, **tags)
                    for metric, (value, unit) in readings.items()])
        steps.append((len(live), batch_s / batch, harness_cpu_s, used))
        # What the live instances hold is kept to the end: out of the collector's way, so
        # that its full passes do not grow with the number alive (unfrozen after).
        gc.freeze()
        rate = len(live) / max(time.monotonic() - began, 1e-9)
        note(f"ramp {turn.ramp + 1}: {len(live)} of {params.max_instances} alive, "
             f"{rate:.0f}/s, last batch {batch_s / batch * 1000:.1f} ms each, "
             f"{host.mem_available / MIB / 1024:.1f} GiB available, "
             f"{used / max(len(live), 1) / MIB:.2f} MiB each")
    gc.unfreeze()
    alive = len(live)
    idle: list[Any] = []
    if params.idle_cpu_s > 0 and live:
        note(f"ramp {turn.ramp + 1}: idle CPU over {params.idle_cpu_s:g} s")
        idle = _idle_cpu(ctx, plan, name, live, params.idle_cpu_s, tags)
        ctx.record(idle)
    note(f"ramp {turn.ramp + 1}: stopping {alive}")
    teardowns = teardown(ctx, name, live)
    ctx.record([
        *(ctx.sample(plan, name, "teardown_s", seconds, "s", instance=str(index + 1), **tags)
          for index, seconds in enumerate(teardowns)),
        ctx.sample(plan, name, "max_instances_alive", alive, "count", **tags),
    ])
    summary: dict[str, Any] = {"ramp": turn.ramp, "position": turn.position, "turns": turn.of,
                               "stopped_by": reason, "instances": alive,
                               "teardown_total_s": round(sum(teardowns), 3)}
    if uptime_s is not None:
        summary["host_uptime_s"] = round(uptime_s)
    if params.ksm != "host":
        summary["ksm"] = params.ksm
    summary.update(by_tenth(steps))
    reached = {str(level): point for level in LEVELS
               if (point := at_live([(s[0], s[1], s[3]) for s in steps], level)) is not None}
    if reached:
        summary["at_live"] = reached
    per_instance = [s.value for s in idle if s.metric == "idle_cpu_percent"]
    if per_instance:
        per_instance.sort()
        summary["idle_cpu_percent_per_instance_p50"] = round(
            per_instance[len(per_instance) // 2], 3)
    return summary, failure


def by_tenth(steps: list[tuple[int, float, float, int]]) -> dict[str, Any]:
    """The ramp's own curve: per tenth of the instances it reached, the median launch time
    and harness CPU per launch (ms) and, at its end, host memory per instance (MiB).

    Tenths of two ramps that stopped at different counts cover different ranges: compare
    backends with :func:`at_live` instead."""
    if not steps:
        return {}
    top = steps[-1][0]
    tenths: list[list[tuple[int, float, float, int]]] = [[] for _ in range(10)]
    for step in steps:
        tenths[min(9, max(0, (step[0] - 1) * 10 // max(top, 1)))].append(step)

    def median(values: list[float]) -> float:
        values = sorted(values)
        return values[len(values) // 2]

    curve = []
    for index, group in enumerate(tenths):
        if group:
            curve.append({"tenth": index + 1, "alive": group[-1][0],
                          "launch_p50_ms": round(median([g[1] for g in group]) * 1000, 3),
                          "harness_cpu_ms": round(median([g[2] for g in group]) * 1000, 3),
                          "mem_mib_per_instance": round(group[-1][3] / group[-1][0] / MIB, 3)})
    return {"curve_by_tenth": curve}


def at_live(steps: Sequence[tuple[int, float, float]], level: int) -> dict[str, Any] | None:
    """A ramp at ``level`` live instances, from its steps (instances alive after the step,
    launch time per instance of the step's batch in s, host memory used then in bytes), in
    ramp order; None if the ramp never reached ``level``.

    ``launch_p50_ms``: the median of the per-instance launch times of the batches that
    launched instances between ``level - level / BAND`` (excluded) and ``level`` (a batch
    covers the instances after the previous step's count up to its own); ``batches``: how
    many. ``mem_mib_per_instance``: host memory used / instances alive at the first step
    that reached ``level`` (``alive``: that count, ``level`` itself when the batches divide
    it)."""
    if not steps or max(step[0] for step in steps) < level:
        return None
    band = []
    previous = 0
    for alive, launch_s, _used in steps:
        if alive * BAND > level * (BAND - 1) and previous < level:
            band.append(launch_s)
        previous = alive
    alive, _launch_s, used = next(step for step in steps if step[0] >= level)
    return {"alive": alive, "launch_p50_ms": round(statistics.median(band) * 1000, 3),
            "batches": len(band), "mem_mib_per_instance": round(used / alive / MIB, 3)}


def _uptime_s() -> float | None:
    """Seconds since the host booted (a first ramp on a fresh host is apart from later ones)."""
    try:
        with open("/proc/uptime") as handle:
            return float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of process ``pid`` (every thread), in clock ticks; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def _host_busy() -> tuple[int, int]:
    """(busy, total) CPU ticks of the host so far, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _idle_cpu(ctx: RunContext, plan: Scenario[DensityParams], name: str,
              live: list[Instance], seconds: float, tags: dict[str, int]) -> list[Any]:
    """Each live instance's CPU use over ``seconds`` of idling (percent of one CPU, its host
    processes: a container's init, a VM's QEMU), and how busy the host's CPUs were."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [(index, instance.pids[0]) for index, instance in enumerate(live) if instance.pids]
    before = {pid: _cpu_ticks(pid) for _, pid in pids}
    host_before = _host_busy()
    began = time.monotonic()
    time.sleep(seconds)
    after = {pid: _cpu_ticks(pid) for _, pid in pids}
    host_after = _host_busy()
    elapsed = time.monotonic() - began
    samples = []
    for index, pid in pids:
        old, new = before[pid], after[pid]
        if old is None or new is None:
            continue
        samples.append(ctx.sample(plan, name, "idle_cpu_percent", 100 * (new - old) / ticks
                                  / elapsed, "percent", instance=str(index + 1), **tags))
    busy, total = (a - b for a, b in zip(host_after, host_before, strict=True))
    samples.append(ctx.sample(plan, name, "host_cpu_busy_percent", 100 * busy / max(total, 1),
                              "percent", **tags))
    return samples


def launch_batch(ctx: RunContext, plan: Scenario[DensityParams], name: str, batch: int,
                 live: list[Instance], pool: ThreadPoolExecutor) -> float:
    """Start ``batch`` instances concurrently, then wait until each printed READY; the
    batch's start → all-READY time.

    ``launch_s`` (this divided by the batch size) is the per-instance launch cost at the
    step's density: instances of a batch start concurrently, so one instance's own
    start→READY would count its neighbours' work.
    """
    backend = ctx.backends[name]
    begin = metrics.now_ns()
    starts = [pool.submit(ctx.start, name, plan) for _ in range(batch)]
    started: list[Instance] = []
    problem: BaseException | None = None
    for future in starts:  # collect every start, even after a failure, so none is lost
        try:
            started.append(future.result())
        except BaseException as error:  # each start must be collected
            problem = problem or error
    live.extend(started)
    try:
        if problem is not None:
            raise problem
        for done in [pool.submit(backend.wait_ready, instance, plan.timeout_s)
                     for instance in started]:
            done.result()
        return metrics.seconds_since(begin)
    except BackendError:
        del live[len(live) - len(started):]  # a half-started batch is not part of the ramp
        teardown(ctx, name, started)
        raise


def teardown(ctx: RunContext, name: str, live: list[Instance]) -> list[float]:
    """Stop and remove every instance, newest first, one after another; each one's time."""
    times = []
    while live:
        begin = metrics.now_ns()
        ctx.stop(name, live.pop())
        times.append(metrics.seconds_since(begin))
    return times


def charts(samples: pd.DataFrame, scenario: str, output: Path) -> list[Path]:
    """Per family (a row each, so containers are not flattened by VMs): host memory used vs
    instances alive on linear axes, with each backend's per-instance slope and the readings at
    or below zero marked as noise; launch time per instance vs instances alive (log). A line
    per ramp: one colour per backend, its first ramp solid, the second dashed, ..."""
    from harness.charts import accel_text, family_groups, plain_numbers, plt, save

    data = samples[samples.scenario == scenario]
    families = family_groups(data)
    if data.empty or not families:
        return []
    figure, axes = plt.subplots(len(families), 2, figsize=(12, 4.6 * len(families)),
                                squeeze=False)
    for (_, members), (memory_axis, latency_axis) in zip(families, axes, strict=True):
        what = f"{accel_text(members)}, cold starts"
        noise_marked = False
        ramps = members.assign(ramp=members.repetition.fillna(0).astype(int))
        several = ramps.ramp.nunique() > 1
        for index, (series, group) in enumerate(ramps.groupby("series", sort=False)):
            colour = f"C{index % 10}"  # one colour per backend, a line style per ramp
            for ramp, ramp_group in group.groupby("ramp", sort=True):
                steps = ramp_group.pivot_table(index="step", columns="metric", values="value")
                label = f"{series}, ramp {int(ramp) + 1}" if several else str(series)
                style = RAMP_STYLES[int(ramp) % len(RAMP_STYLES)]
                if {"instances_alive", "host_mem_used_bytes"} <= set(steps.columns):
                    steps = steps.dropna(subset=["instances_alive", "host_mem_used_bytes"])
                    alive, used = steps.instances_alive, steps.host_mem_used_bytes / MIB
                    memory_axis.plot(alive, used, marker=".", color=colour, linestyle=style,
                                     label=f"{label}{_slope_label(alive, used)}")
                    low = used <= 0  # below the baseline reading: the host's own noise
                    if low.any():
                        memory_axis.scatter(alive[low], used[low], s=60, facecolors="none",
                                            edgecolors=colour, zorder=3,
                                            label=None if noise_marked else "≤ 0: noise")
                        noise_marked = True
                if {"instances_alive", "launch_s"} <= set(steps.columns):
                    latency_axis.plot(steps.instances_alive, steps.launch_s * 1000, marker=".",
                                      color=colour, linestyle=style, label=label)
        memory_axis.axhline(0, color="grey", linewidth=0.8)
        memory_axis.set_xlabel("instances alive")
        memory_axis.set_ylabel("host memory used, MiB (MemAvailable drop)")
        memory_axis.set_title(f"{scenario}: host memory vs instances, MiB (linear)\n{what}",
                              fontsize=10)
        latency_axis.set_xlabel("instances alive")
        latency_axis.set_ylabel("launch time per instance, ms (log scale)")
        latency_axis.set_yscale("log")
        plain_numbers(latency_axis)
        latency_axis.set_title(f"{scenario}: launch per instance vs instances, ms (log)\n"
                               f"{what}", fontsize=10)
        for axis in (memory_axis, latency_axis):
            axis.grid(alpha=0.3, which="both")
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=8)
    figure.tight_layout()
    return save(figure, output, f"{scenario}-density")


def _slope_label(alive: pd.Series, used_mib: pd.Series) -> str:
    """`` (0.652 MiB/instance)``: the Theil–Sen slope of the curve, if it has two steps."""
    if len(alive) < 2 or alive.nunique() < 2:
        return ""
    from scipy.stats import theilslopes

    return f" ({theilslopes(used_mib, alive).slope:.3g} MiB/instance)"


METRICS = (  # the headline's in its order first
    Metric("max_instances_alive", "count", HIGHER, Headline(
        "instances reached", tail=False, ratio=False)),
    Metric("launch_s", "s", LOWER, Headline(
        "launch per instance",
        note="a batch's start → all READY / batch size, over every ramp's steps")),
    Metric(SLOPE_METRIC, "bytes", LOWER, Headline(
        "host memory per instance", tail=False,
        note="slope of host memory used vs instances alive (Theil–Sen over a ramp's steps, "
             "one value per ramp)")),
    Metric("teardown_s", "s", LOWER, Headline("teardown per instance")),
    Metric("batch_launch_s", "s", LOWER),
    # the harness's CPU per launch, from its process times in clock ticks: mostly zero per
    # batch, so no median to hold to a threshold; said, not gated
    Metric("harness_cpu_per_launch_s", "s"),
    Metric("harness_sys_per_launch_s", "s"),
    Metric("idle_cpu_percent", "percent"),
    # the host at each step: points of a curve, and the run's conditions
    Metric("host_mem_used_bytes", "bytes", host_reading=True),
    Metric("host_cpu_busy_percent", "percent", host_reading=True),
    Metric("instances_alive", "count", host_reading=True, input=True),
    Metric("host_mem_available_bytes", "bytes", host_reading=True, input=True),
    Metric("host_committed_as_bytes", "bytes", host_reading=True, input=True),
    Metric("ksm_pages_shared", "pages", host_reading=True, input=True),
    Metric("ksm_pages_sharing", "pages", host_reading=True, input=True),
)

KIND = Kind(
    "density", "instances ramped up until a limit, launch time and host memory at each step",
    DensityParams, run, METRICS, charts, captions={
        "density": "the ramp, one row per family: host memory used as instances pile up "
                   "(linear, with each backend's slope in MiB per instance; readings at or "
                   "below zero are noise, circled), and launch time per instance (log scale); "
                   "a line per ramp, the 2nd dashed.",
    })
