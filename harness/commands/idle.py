"""``cvbench idle``: what idle instances cost in CPU, and what wakes them (root).

Boots ``--instances`` instances of each backend in turn (VMs: guests of ``--memory`` MiB, the
guest a density run boots, with ``--option`` backend options such as ``acpi=true`` or
``cmdline_extra=...``), two at a time by the density kind's batch launch (each pair timed to
READY), idles ``--settle`` seconds, then measures over ``--seconds``: per instance, the CPU
time of its host process (a VM's QEMU, a container's init; user + system, all threads, from
``/proc/<pid>/task/*/stat``) as a percentage of one CPU, and the wake-ups per second of each
of its thread kinds (voluntary + involuntary context switches: a TCG guest's ``CPU 0/TCG`` is
its vCPU, ``qemu-system-x86`` QEMU's main loop). Then it stops them. The run directory (under
``--out``) holds ``idle_cpu_percent`` per instance and ``batch_launch_s`` per pair as samples,
and per backend a summary in ``metadata.json`` (``idle``); one line per backend is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends import registry
from harness.commands import experiment
from harness.commands.base import Subparsers
from hostkit import validate

if TYPE_CHECKING:
    from harness.context import RunContext
    from harness.scenario import Scenario

KIND = "idle"
OUT = "/var/tmp/cvbench-idle"
PAIR = 2  # instances launched together
ThreadStats = dict[str, tuple[float, int]]  # thread name -> (CPU seconds, context switches)


@dataclass(frozen=True)
class IdleParams:
    """The experiment's own scenario keys (from the command line, already checked)."""

    instances: int = 10
    settle_s: float = 10.0
    seconds: float = 20.0


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "idle", help="CPU and wake-ups of idle instances, per thread kind (root)",
        description=(__doc__ or "").split("\n\n")[0], parents=[experiment.options(
            OUT, 300.0, "backend option for every backend, e.g. acpi=true")])
    parser.add_argument("--backend", type=registry.NAME_LIST, default="qemu,libvirt",
                        help="comma-separated backends, measured in turn (default qemu,libvirt)")
    parser.add_argument("--instances", type=validate.INSTANCES, default=10,
                        help="instances booted per backend (default 10)")
    parser.add_argument("--memory", type=validate.GUEST_MEMORY_MIB, default=96,
                        help=f"guest memory, {validate.GUEST_MEMORY_MIB.describe()} (default 96)")
    parser.add_argument("--settle", type=validate.DURATION_S, default=10.0,
                        help="idle time after the last READY, before measuring (default 10 s)")
    parser.add_argument("--seconds", type=validate.INTERVAL_S, default=20.0,
                        help=f"the measuring window, {validate.INTERVAL_S.describe()} "
                             "(default 20)")
    parser.set_defaults(func=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from harness import results, scenario
    from harness.kinds.registry import KindInfo

    backends = scenario.parse_backends(args.backend)
    given = experiment.backend_options(args.option)
    kind = KindInfo(KIND, IdleParams, run, "idle instances' CPU and wake-ups")
    with experiment.registered(kinds=[kind]):
        plan = scenario.make(KIND, timeout_s=args.timeout, guest_memory_mib=args.memory,
                             instances=args.instances, settle_s=args.settle,
                             seconds=args.seconds)
        outcome = experiment.run("idle", plan, backends, dict.fromkeys(backends, given),
                                 Path(args.out), quiet=args.quiet)
    if isinstance(outcome, int):
        return outcome
    summaries = results.read_metadata(outcome).get(KIND, {})
    for name in backends:
        if name in summaries:
            print(line(name, summaries[name]))
    print(outcome)
    return experiment.exit_code(outcome)


def run(ctx: RunContext, plan: Scenario[Any], backend_names: tuple[str, ...]) -> None:
    """The experiment as a kind's ``run``: each backend's instances up, idle, measured, down."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from harness.kinds import density

    params: IdleParams = plan.params
    summaries = ctx.writer.metadata.setdefault(KIND, {})
    for name in backend_names:
        live: list[Any] = []
        with ThreadPoolExecutor(PAIR, thread_name_prefix="cvbench-launch") as pool:
            try:
                while len(live) < params.instances:
                    pair = min(PAIR, params.instances - len(live))
                    seconds = density._launch_batch(ctx, plan, name, pair, live, pool)
                    ctx.record([ctx.sample(plan, name, "batch_launch_s", seconds, "s",
                                           step=len(live))])
                time.sleep(params.settle_s)
                pids = [instance.pids[0] for instance in live if instance.pids]
                before = {pid: thread_stats(pid) for pid in pids}
                began = time.monotonic()
                time.sleep(params.seconds)
                after = {pid: thread_stats(pid) for pid in pids}
                elapsed = time.monotonic() - began
            finally:
                density._teardown(ctx, name, live)
        cpu, wakeups = idle_figures(before, after, elapsed)
        ctx.record([ctx.sample(plan, name, "idle_cpu_percent", percent, "percent",
                               instance=str(index + 1)) for index, percent in enumerate(cpu)])
        boots = [s.value for s in ctx.writer.samples
                 if s.backend == name and s.metric == "batch_launch_s"]
        summaries[name] = summary(cpu, wakeups, boots)
        ctx.writer.flush()
        ctx.writer.write_metadata()


def thread_stats(pid: int, proc: Path = Path("/proc")) -> ThreadStats:
    """Thread name -> (CPU seconds, context switches) of process ``pid``, summed over its
    threads of that name; {} if it is gone."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    try:
        tasks = list(os.scandir(proc / str(pid) / "task"))
    except OSError:
        return {}
    for task in tasks:
        try:
            stat = Path(task.path, "stat").read_text()
            status = Path(task.path, "status").read_text()
        except OSError:
            continue  # the thread ended
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        switches = sum(int(line.split()[1]) for line in status.splitlines()
                       if line.startswith(("voluntary_ctxt_switches:",
                                           "nonvoluntary_ctxt_switches:")))
        found[name][0] += (int(fields[11]) + int(fields[12])) / ticks
        found[name][1] += switches
    return {name: (cpu, int(count)) for name, (cpu, count) in found.items()}


def idle_figures(before: dict[int, ThreadStats], after: dict[int, ThreadStats],
                 elapsed: float) -> tuple[list[float], dict[str, list[float]]]:
    """Per process (in ``before``'s order, those still there after): its CPU use over the
    window in percent of one CPU; per thread name: each process's wake-ups per second."""
    cpu: list[float] = []
    wakeups: dict[str, list[float]] = defaultdict(list)
    for pid, old in before.items():
        new = after.get(pid)
        if not new:
            continue
        total = 0.0
        for name, (seconds, switches) in new.items():
            old_seconds, old_switches = old.get(name, (0.0, 0))
            total += seconds - old_seconds
            wakeups[name].append((switches - old_switches) / elapsed)
        cpu.append(100 * total / elapsed)
    return cpu, dict(wakeups)


def summary(cpu: list[float], wakeups: dict[str, list[float]], boots: list[float]
            ) -> dict[str, Any]:
    """What ``metadata.json``'s ``idle`` keeps of one backend: medians."""
    return {
        "instances": len(cpu),
        "idle_cpu_percent_p50": round(statistics.median(cpu), 3) if cpu else None,
        "idle_cpu_percent_mean": round(statistics.mean(cpu), 3) if cpu else None,
        "wakeups_per_s_p50": {name: round(statistics.median(values), 1)
                              for name, values in sorted(wakeups.items())},
        "pair_launch_s_p50": round(statistics.median(boots), 3) if boots else None,
    }


def line(name: str, figures: dict[str, Any]) -> str:
    """One backend's summary as the printed line."""
    top = sorted(figures["wakeups_per_s_p50"].items(), key=lambda kv: -kv[1])[:4]
    return (f"{name}: {figures['idle_cpu_percent_p50']}% of a CPU per idle instance (median "
            f"of {figures['instances']}; mean {figures['idle_cpu_percent_mean']}%), wake-ups/s: "
            + ", ".join(f"{thread} {rate:.0f}" for thread, rate in top)
            + f"; two to READY: {figures['pair_launch_s_p50']} s")
