"""The workload scenario: how much slower a program runs inside an instance than on the host.

Every backend gets one long-lived instance of the ``workloads`` image (started, unmeasured,
at its first turn; VMs boot it from their disk), whose agent connects to the harness
(:mod:`harness.workloads.agent`). A *turn* is one workload on one backend (``cpu-1`` on
``crun``, ``fio-randread-volume`` on ``libvirt``, ...); every round takes every turn once, in
an order shuffled from the run's seed (the position goes with the samples), and ``warmup``
rounds come first and are not recorded (they also lay out fio's files and warm the caches).
Each result is a sample whose ``variant`` names the workload and its parameters
(``fio randread bs=4k qd=1 target=root``) and whose ``unit`` is the figure's. The raw output
of every command is kept under ``raw/<scenario>/<backend>/`` in the run directory.

Instances run next to each other, idle when it is not their turn (idle VMs under TCG cost a
little CPU: all backends see the same neighbours). The ``process`` floor runs the same
binaries on the host, its disk workloads in host directories on the filesystem that holds
the containers' upper directories and the VMs' disks; network workloads go host → instance
over ``cvbench0`` (loopback for ``process``). The turns go through the round loop
(:class:`harness.kinds.rounds.Rounds`). A failure (a tool missing, an instance that does not
start or cannot reach its disk or network, output that cannot be parsed) is one line naming
the backend and the workload; the run goes on and is marked incomplete. A workload that fails
three times in a row is given up, and so is a backend whose instance does not start three
times in a row.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends import registry
from harness.backends.base import VOLUME_PATH, BackendError, Instance
from harness.kinds import rounds
from harness.kinds.base import HIGHER, LOWER, Kind, Metric
from harness.params import param
from harness.workloads import catalog
from harness.workloads.agent import Agent, AgentError, Controller
from hostkit import validate
from hostkit.paths import state_dir

if TYPE_CHECKING:
    import pandas as pd

    from harness.context import RunContext
    from harness.results import Sample
    from harness.scenario import Scenario

RECONNECT_S = 10.0  # a broken agent connection: wait this long for the agent to come back
AGENT_TIMEOUT_S = 60.0  # after READY, the agent connects within a second or two
SCRATCH = "/var/tmp/cvbench"  # disk workloads' directory on an instance's own root
ON_HOST = ("process",)  # backends that run on the host itself (agent on loopback)
CLOCKSOURCE = "/sys/devices/system/clocksource/clocksource0/current_clocksource"
# Tick-based clocks: a 4 ms resolution makes every latency inside the instance 0 or a tick.
# A VM guest falls back to them without ACPI (no HPET, no ACPI PM timer) under TCG.
COARSE_CLOCKS = ("jiffies", "refined-jiffies")


MAX_REDIS_REQUESTS = 100_000_000  # redis-benchmark's requests per test: hours of work


@dataclass(frozen=True)
class WorkloadParams:
    """The workload scenario's own keys."""

    workloads: tuple[str, ...] = field(default=catalog.GROUPS, metadata=param(
        choices=catalog.GROUPS, doc="workload groups run: cpu, memory, disk, network, redis"))
    targets: tuple[str, ...] = field(default=catalog.TARGETS, metadata=param(
        choices=catalog.TARGETS, doc="where disk workloads do their I/O: root (the "
        "instance's own), volume (a host directory handed in)"))
    repetitions: int = field(default=3, metadata=param(
        minimum=1, maximum=validate.MAX_ROUNDS,
        doc="measured rounds (every workload on every backend once per round)"))
    warmup: int = field(default=1, metadata=param(
        minimum=0, maximum=validate.MAX_ROUNDS,
        doc="unmeasured rounds first (start instances, lay out files, warm up)"))
    duration_s: int = field(default=5, metadata=param(
        minimum=1, maximum=validate.DAY_S,
        doc="seconds each timed workload runs (sysbench, fio, iperf3, sockperf)"))
    fio_size_mib: int = field(default=256, metadata=param(
        minimum=1, maximum=validate.MAX_MEMORY_MIB, doc="size of fio's file on each target"))
    redis_requests: int = field(default=100000, metadata=param(
        minimum=1, maximum=MAX_REDIS_REQUESTS,
        doc="requests per redis-benchmark test (SET, GET)"))
    redis_clients: int = field(default=50, metadata=param(
        minimum=1, maximum=validate.MAX_COUNT, doc="redis-benchmark's parallel connections"))
    settle_s: float = field(default=0.0, metadata=param(
        bounds=validate.DURATION_S, doc="idle time between two turns"))


@dataclass(frozen=True)
class Turn:
    backend: str
    workload: str


@dataclass
class Live:
    """A backend's instance and its agent, for the whole scenario."""

    instance: Instance
    token: str
    workdir: Path  # the host side: the volume (and process's own root)
    session: catalog.Session
    label: str = "start"  # the current round, for the raw output's file names


def settings(params: WorkloadParams, timeout_s: float) -> catalog.Settings:
    return catalog.Settings(duration_s=params.duration_s, threads_all=os.cpu_count() or 1,
                            fio_size_mib=params.fio_size_mib,
                            redis_requests=params.redis_requests,
                            redis_clients=params.redis_clients, slack_s=timeout_s)


def workdir_root() -> Path:
    return state_dir() / "workloads"


def raw_dir(ctx: RunContext, scenario: str, backend: str) -> Path:
    return ctx.writer.directory / "raw" / scenario / backend


def run(ctx: RunContext, scenario: Scenario[WorkloadParams], backend_names: tuple[str, ...]
        ) -> None:
    plans = {name: scenario.for_backend(name) for name in backend_names}
    for name, plan in list(plans.items()):
        if not _on_host(name, plan) and plan.network != "bridge":
            ctx.fail(plan, name, "the workload kind needs network = \"bridge\" (the agent "
                     "and the network workloads reach the instance over it): not measured")
            del plans[name]
    by_turn = {Turn(name, w.name): w for name, plan in plans.items()
               for w in catalog.workloads(plan.params.workloads, plan.params.targets)}
    controller = Controller()
    lives: dict[str, Live] = {}

    def prepare(turn: Turn, slot: rounds.Slot) -> None:
        try:
            _live(ctx, controller, plans[turn.backend], turn.backend, lives).label = slot.label
        except (BackendError, AgentError, catalog.WorkloadError) as error:
            raise catalog.WorkloadError(f"cannot start the instance: {error}") from None

    def measure(turn: Turn, slot: rounds.Slot) -> list[Sample]:
        plan, live = plans[turn.backend], lives[turn.backend]
        results = by_turn[turn].run(live.session, settings(plan.params, plan.timeout_s))
        return [ctx.sample(plan, turn.backend, figure.metric, figure.value, figure.unit,
                           repetition=slot.repetition, variant=result.variant,
                           position=slot.position, instance=live.instance.name)
                for result in results for figure in result.figures]

    try:
        rounds.Rounds(
            scenario.name, plans,
            {name: rounds.Schedule(plan.params.warmup, plan.params.repetitions,
                                   plan.params.settle_s) for name, plan in plans.items()},
            list(by_turn), measure, what=lambda turn: turn.workload,
            errors=(catalog.WorkloadError,), prepare=prepare,
        ).run(ctx)
    finally:
        for name, live in list(lives.items()):
            _finish(ctx, plans[name], name, live)
        controller.close()
        _done_with_bridge()
    ctx.writer.flush()


def _live(ctx: RunContext, controller: Controller, plan: Scenario[WorkloadParams],
          backend: str, lives: dict[str, Live]) -> Live:
    """The backend's instance with a working agent: the one it has, its agent back after a
    broken connection, or a new instance."""
    live = lives.get(backend)
    if live is not None and not live.session.agent.broken:
        return live
    if live is not None:
        try:
            live.session.agent = controller.wait(live.token, RECONNECT_S)
            return live
        except AgentError:
            _finish(ctx, plan, backend, lives.pop(backend))
    lives[backend] = _start(ctx, controller, plan, backend)
    return lives[backend]


def _start(ctx: RunContext, controller: Controller, plan: Scenario[WorkloadParams],
           backend: str) -> Live:
    """Start an instance of the image with the agent's address and token in its environment,
    a host directory as its volume, and wait for READY and for its agent."""
    on_host = _on_host(backend, plan)
    token = controller.token()
    spec = ctx.spec(plan)
    workdir = workdir_root() / spec.name
    volume = workdir / "volume"
    volume.mkdir(parents=True, exist_ok=True)
    for directory in (workdir_root().parent, workdir_root(), workdir):
        directory.chmod(directory.stat().st_mode | 0o711)  # QEMU's user reaches the volume
    spec = dataclasses.replace(
        spec, disk=registry.family(backend) == registry.VM or spec.disk, volume=volume,
        env=(f"CVBENCH_CONTROL={controller.control(on_host)}", f"CVBENCH_TOKEN={token}"))
    instance: Instance | None = None
    try:
        instance = ctx.start(backend, plan, spec)
        ctx.backends[backend].wait_ready(instance, plan.timeout_s)
        agent = controller.wait(token, min(plan.timeout_s, AGENT_TIMEOUT_S))
        try:
            _check_clock(ctx, backend, agent)
        except BaseException:
            agent.close()
            raise
    except BaseException:
        if instance is not None:
            try:
                ctx.stop(backend, instance)
            except BackendError:
                pass
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    scratch = SCRATCH if not agent.on_host else str(workdir / "root")
    target = VOLUME_PATH if not agent.on_host else str(volume)
    raw = raw_dir(ctx, plan.name, backend)
    live: Live

    def keep(label: str, text: str) -> None:
        raw.mkdir(parents=True, exist_ok=True)
        with open(raw / f"{live.label}-{label}.txt", "a") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")

    session = catalog.Session(agent, ctx.image.rootfs, scratch, target, keep)
    live = Live(instance, token, workdir, session)
    return live


def _check_clock(ctx: RunContext, backend: str, agent: Agent) -> None:
    """Record the instance's clocksource in the run's metadata (``clocksource``): a guest's
    own, read through the agent; the host's for containers and processes, which share its
    kernel. A tick-based one is a WorkloadError: latencies timed inside would be ticks."""
    if registry.family(backend) != registry.VM:
        clock = Path(CLOCKSOURCE).read_text().strip()
    else:
        try:
            output = agent.run(f"cat {CLOCKSOURCE}", 10)
        except AgentError as error:
            raise catalog.WorkloadError(
                f"cannot read the instance's clocksource: {error}") from None
        clock = output.text.strip() if output.returncode == 0 else "unknown"
    ctx.writer.metadata.setdefault("clocksource", {})[backend] = clock
    if clock in COARSE_CLOCKS:
        raise catalog.WorkloadError(
            f"the instance's clocksource is {clock} (4 ms ticks), so latencies timed inside it "
            "mean nothing; VM guests need ACPI for a timer ([backend_options.<vm>] acpi = true)")


def _on_host(backend: str, plan: Scenario[Any]) -> bool:
    """Whether ``backend``'s instances share the host's network (their agent then connects
    over loopback, and their servers listen there)."""
    return backend in ON_HOST or plan.network == "host"


def _finish(ctx: RunContext, plan: Scenario[Any], backend: str, live: Live) -> None:
    """Stop and remove the instance, then its host directory."""
    live.session.agent.close()
    try:
        ctx.stop(backend, live.instance)
    except BackendError as error:
        ctx.fail(plan, backend, f"cannot stop {live.instance.name}: {error}")
    shutil.rmtree(live.workdir, ignore_errors=True)


def sweep() -> list[str]:
    """``cvbench clean``: remove the host directories (volumes, fio files) of instances a
    killed run left; nothing holds them once the backends' sweepers have run."""
    removed = []
    root = workdir_root()
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"workload directory {directory}")
    return removed


def _done_with_bridge() -> None:
    """Remove ``cvbench0`` if the agents' listener was its last user."""
    from runtime import network

    try:
        network.remove_bridge_if_unused()
    except Exception:  # busy or gone meanwhile: `cvbench clean` removes it later
        pass


# --- charts ------------------------------------------------------------------------------


def relative(samples: pd.DataFrame, scenario: str, floor: str = "process") -> pd.DataFrame:
    """Per variant, metric and backend: the median, and performance relative to ``floor``
    (1 = the floor; above 1 better, below worse: latencies are inverted) with its spread
    over the repetitions (min and max)."""
    import pandas as pd

    data = samples[(samples.scenario == scenario) & (samples.kind == "workload")]
    data = data.assign(_order=data.variant.map(_variant_order)).sort_values(
        ["_order", "variant"], kind="stable")
    rows = []
    for (variant, metric, unit), group in data.groupby(["variant", "metric", "unit"],
                                                       sort=False):
        base = group[group.backend == floor]["value"]
        if base.empty or not base.median() > 0:
            continue
        floor_median = float(base.median())
        declared = KIND.metric(str(metric))
        lower = declared is not None and declared.better == LOWER
        for backend, values in group.groupby("backend", sort=False)["value"]:
            ratios = (floor_median / values) if lower else (values / floor_median)
            rows.append({"variant": variant, "metric": metric, "unit": unit,
                         "backend": backend, "n": len(values), "median": values.median(),
                         "relative": float(ratios.median()), "low": float(ratios.min()),
                         "high": float(ratios.max()), "lower_is_better": lower})
    return pd.DataFrame(rows)


def summary_markdown(table: pd.DataFrame, floor: str = "process") -> str:
    """The summary table: one row per workload figure, per backend its median and, in
    brackets, its performance relative to ``floor``."""
    if table.empty:
        return "No workload figures.\n"
    backends = _backend_order(table)
    lines = ["| workload | metric | unit | " + " | ".join(backends) + " |",
             "|---|---|---|" + "---:|" * len(backends)]
    for (variant, metric, unit), group in table.groupby(["variant", "metric", "unit"],
                                                        sort=False):
        cells = []
        for backend in backends:
            row = group[group.backend == backend]
            if row.empty:
                cells.append("–")
                continue
            cell = _number(float(row.iloc[0]["median"]), str(unit))
            if backend != floor:
                cell += f" ({float(row.iloc[0]['relative']):.2f}×)"
            cells.append(cell)
        lines.append(f"| {variant} | {metric} | {unit} | " + " | ".join(cells) + " |")
    lines += ["", f"Medians over the repetitions; in brackets, performance relative to "
              f"`{floor}` (1.00× = as fast as the host, below 1 = slower; for latencies the "
              "inverse ratio)."]
    return "\n".join(lines) + "\n"


GROUP_ORDER = ("cpu", "memory", "fio", "iperf3", "sockperf", "redis")


def _variant_order(variant: str) -> int:
    """Rows and bars in the catalogue's order of groups."""
    group = str(variant).split(" ", 1)[0]
    return GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)


def _backend_order(table: pd.DataFrame) -> list[str]:
    """The backends in the registry's order (floors first in each family), others after."""
    present = list(dict.fromkeys(table.backend))
    known = [name for name in registry.names() if name in present]
    return known + [name for name in present if name not in known]


def _number(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1e6:.1f} µs" if value < 1e-3 else f"{value * 1e3:.2f} ms"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


HEADLINE = ("events_per_s", "bandwidth_mib_s", "iops", "throughput_mbit_s", "rtt_p50_s",
            "ops_per_s")  # one figure per workload for the overview chart


def charts(samples: pd.DataFrame, scenario: str, output: Path) -> list[Path]:
    """Per workload group, and one overview of each workload's headline figure, every
    backend's figures relative to ``process`` (bars: median over the repetitions, whiskers:
    min and max); and the summary table as Markdown."""
    from harness.charts import plt, save

    table = relative(samples, scenario)
    if table.empty:
        return []
    summary = output / f"{scenario}-summary.md"
    summary.write_text(f"# {scenario}: workloads relative to process\n\n"
                       + summary_markdown(table))
    paths = [summary]
    table["group"] = table["variant"].str.split().str[0]
    order = _backend_order(table)
    headline = table[table.metric.isin(HEADLINE)]
    groups = [("overview", headline)] if not headline.empty else []
    for group_name, group in [*groups, *table.groupby("group", sort=False)]:
        labels = list(dict.fromkeys(zip(group.variant, group.metric, strict=True)))
        width_in = min(18.0, max(6.0, 0.2 * len(labels) * len(order) + 2))
        figure, axis = plt.subplots(figsize=(width_in, 5.2))
        width = 0.8 / len(order)
        for index, backend in enumerate(order):
            rows = group[group.backend == backend].set_index(["variant", "metric"])
            xs: list[float] = []
            heights: list[float] = []
            errors: list[list[float]] = [[], []]
            for position, key in enumerate(labels):
                if key not in rows.index:
                    continue
                row = rows.loc[key]
                xs.append(position + (index - (len(order) - 1) / 2) * width)
                heights.append(row["relative"])
                errors[0].append(max(0.0, row["relative"] - row["low"]))
                errors[1].append(max(0.0, row["high"] - row["relative"]))
            axis.bar(xs, heights, width, yerr=errors, capsize=2, label=backend)
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_xticks(range(len(labels)),
                        [_label(variant, metric, group_name == "overview")
                         for variant, metric in labels], fontsize=7, rotation=35, ha="right")
        axis.set_ylabel("performance relative to process (higher is better)")
        axis.set_yscale("log")
        axis.set_title(f"{scenario}: {group_name}, relative to process (bars: median, "
                       "whiskers: min–max)")
        axis.grid(axis="y", which="both", alpha=0.3)
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        paths += save(figure, output, f"{scenario}-{group_name}")
    return paths


def _label(variant: str, metric: str, with_tool: bool = False) -> str:
    words = [w for w in variant.split() if w not in ("op=write", "qd=1")]
    return " ".join(words if with_tool else words[1:] or words) + f"\n{metric}"


# The figures of harness/workloads' parsers. None is in the headline by name: it shows every
# figure the run recorded, each workload's rows in the catalogue's order.
METRICS = (
    Metric("events_per_s", "events/s", HIGHER),  # sysbench cpu
    Metric("bandwidth_mib_s", "MiB/s", HIGHER),  # sysbench memory, fio sequential
    Metric("iops", "IOPS", HIGHER),  # fio random
    Metric("latency_p50_s", "s", LOWER),  # fio random, redis-benchmark
    Metric("latency_p99_s", "s", LOWER),
    Metric("throughput_mbit_s", "Mbit/s", HIGHER),  # iperf3
    Metric("rtt_p50_s", "s", LOWER),  # sockperf
    Metric("rtt_p99_s", "s", LOWER),
    Metric("ops_per_s", "ops/s", HIGHER),  # redis-benchmark
)

KIND = Kind(
    "workload", "CPU, memory, disk, network and redis inside one instance per backend, "
    "relative to the host", WorkloadParams, run, METRICS, charts)
