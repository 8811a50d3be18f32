"""``cvbench profile``: where a container launch's time goes at several live counts (root).

Ramps one container backend up to each ``--levels`` count in turn, launching batches as the
density kind does (its own batch launch: ``--batch`` started concurrently, each awaited until
READY; the density spec, network ``none``, cold starts); at each level it launches
``--sample`` more while two tools watch the whole host:

- ``perf record -e cpu-clock -a -g`` (a software clock, which works where a VM exposes no
  hardware counters), reported per kernel function in the benchmark's own processes (this
  one, the fork server, the launched containers): ``shares.md`` lists the functions whose
  time per launch grows most, self and with callees;
- ``bpftrace`` on the ``raw_syscalls`` tracepoints: time in each system call per launch
  (``syscalls.md``), which shows *which* call grows. Summed over a batch's concurrent
  launches, so it includes time spent waiting on kernel locks.

Then it stops and removes every container. The run directory (under ``--out``) holds the
launch samples (``launch_s`` while ramping, ``profiled_launch_s`` while profiled, ``step`` the
live count), ``perf-<level>.data`` and ``.txt``, ``syscalls-<level>.txt``, ``pids-<level>.txt``,
``launch.md`` (launch p50 per level), ``shares.md`` and ``syscalls.md``.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends import registry
from harness.commands import experiment
from harness.commands.base import Subparsers, UsageError
from hostkit import validate

if TYPE_CHECKING:
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    from harness.backends.base import Instance
    from harness.context import RunContext
    from harness.scenario import Scenario

KIND = "launch-profile"
OUT = "/var/tmp/cvbench-profile"
LEVELS = validate.Names(pattern=r"[0-9]+", meaning="live counts", separator=",")
TRACEFS = Path("/sys/kernel/tracing/events/raw_syscalls")

# x86_64 numbers of the calls a launch makes (the rest are shown by number)
SYSCALLS = {
    0: "read", 1: "write", 2: "open", 3: "close", 4: "stat", 5: "fstat", 7: "poll",
    9: "mmap", 11: "munmap", 12: "brk", 13: "rt_sigaction", 16: "ioctl", 22: "pipe",
    32: "dup", 33: "dup2", 39: "getpid", 41: "socket", 46: "sendmsg", 47: "recvmsg",
    53: "socketpair", 56: "clone", 57: "fork", 59: "execve", 60: "exit", 61: "wait4",
    62: "kill", 72: "fcntl", 80: "chdir", 82: "rename", 83: "mkdir", 84: "rmdir",
    87: "unlink", 88: "symlink", 90: "chmod", 95: "umask", 112: "setsid", 125: "capget",
    126: "capset", 133: "mknod", 155: "pivot_root", 157: "prctl", 160: "setrlimit",
    161: "chroot", 165: "mount", 166: "umount2", 170: "sethostname", 202: "futex",
    217: "getdents64", 231: "exit_group", 232: "epoll_wait", 247: "waitid", 257: "openat",
    262: "newfstatat", 263: "unlinkat", 272: "unshare", 281: "epoll_pwait", 292: "dup3",
    293: "pipe2", 302: "prlimit64", 308: "setns", 317: "seccomp", 424: "pidfd_send_signal",
    429: "move_mount", 430: "fsopen", 431: "fsconfig", 432: "fsmount", 434: "pidfd_open",
    435: "clone3", 439: "faccessat2",
}

BPFTRACE = r"""
tracepoint:raw_syscalls:sys_enter /FILTER/ { @start[tid] = nsecs; @id[tid] = args->id; }
tracepoint:raw_syscalls:sys_exit /@start[tid]/ {
    @ns[@id[tid]] = sum(nsecs - @start[tid]); @calls[@id[tid]] = count();
    delete(@start[tid]); delete(@id[tid]);
}
END { clear(@start); clear(@id); }
"""

# kernel functions whose inclusive cost (children included) the report follows
KEY_FUNCTIONS = (
    "__x64_sys_pivot_root", "chroot_fs_refs", "__x64_sys_move_mount", "__x64_sys_chroot",
    "__x64_sys_umount", "__x64_sys_mount", "alloc_super", "shrinker_alloc",
    "alloc_shrinker_info", "__x64_sys_unshare", "copy_net_ns", "copy_mnt_ns",
    "__x64_sys_mkdir", "cgroup_mkdir", "mem_cgroup_css_alloc", "cpuset_write_resmask",
    "validate_change", "rebuild_sched_domains_locked", "dl_rebuild_rd_accounting",
    "cgroup_file_write", "__x64_sys_execve", "__x64_sys_clone", "__x64_sys_clone3",
    "__x64_sys_seccomp", "__x64_sys_exit_group", "__x64_sys_rmdir", "__x64_sys_openat",
)


@dataclass(frozen=True)
class ProfileParams:
    """The experiment's own scenario keys (from the command line, already checked)."""

    levels: tuple[int, ...] = (100, 8000)
    sample: int = 200
    batch: int = 50
    perf: bool = True
    bpftrace: bool = True


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "profile", help="profile container launches at several live counts (root; perf, "
                        "bpftrace)", description=(__doc__ or "").split("\n\n")[0],
        parents=[experiment.options(OUT, 120.0, "backend option, e.g. pivot_root=true (ours)")])
    parser.add_argument("--backend", type=registry.NAME, default="ours",
                        help="a container backend (default ours)")
    parser.add_argument("--levels", type=LEVELS, default="100,8000",
                        help="comma-separated live counts to profile at, increasing, each "
                             f"{validate.INSTANCES.describe()} (default 100,8000)")
    parser.add_argument("--sample", type=validate.INSTANCES, default=200,
                        help="launches profiled at each level (default 200)")
    parser.add_argument("--batch", type=validate.INSTANCES, default=50,
                        help="instances started together (default 50)")
    parser.add_argument("--no-perf", action="store_true", help="no perf record")
    parser.add_argument("--no-bpftrace", action="store_true", help="no bpftrace")
    parser.set_defaults(func=handle)
    return parser


def check(args: argparse.Namespace) -> ProfileParams:
    """The experiment's keys; UsageError (before anything starts) for what cannot run."""
    import shutil

    try:
        levels = tuple(int(validate.INSTANCES.parse(text)) for text in LEVELS.split(args.levels))
    except validate.Invalid as error:
        raise UsageError(f"--levels: {error}") from None
    if any(later <= earlier for earlier, later in zip(levels, levels[1:], strict=False)):
        raise UsageError(f"--levels: expected increasing counts, got {args.levels}")
    if registry.family(args.backend) != registry.CONTAINER:
        raise UsageError(f"--backend: expected a container backend, got {args.backend!r}")
    if not args.no_perf and shutil.which("perf") is None:
        raise UsageError("perf is not installed (apt-get install linux-perf), or pass --no-perf")
    if not args.no_bpftrace and shutil.which("bpftrace") is None:
        raise UsageError("bpftrace is not installed (apt-get install bpftrace), or pass "
                         "--no-bpftrace")
    if not args.no_bpftrace and not TRACEFS.is_dir():
        raise UsageError("bpftrace needs tracefs (mount -t tracefs nodev /sys/kernel/tracing), "
                         "or pass --no-bpftrace")
    return ProfileParams(levels, args.sample, args.batch, not args.no_perf, not args.no_bpftrace)


def handle(args: argparse.Namespace) -> int:
    from harness import scenario
    from harness.kinds.registry import KindInfo

    params = check(args)
    kind = KindInfo(KIND, ProfileParams, run, "container launches profiled at live counts")
    options = {args.backend: experiment.backend_options(args.option)}
    with experiment.registered(kinds=[kind]):
        plan = scenario.make(KIND, timeout_s=args.timeout, **vars(params))
        outcome = experiment.run("profile", plan, (args.backend,), options, Path(args.out),
                                 quiet=args.quiet)
    if isinstance(outcome, int):
        return outcome
    for name in ("launch.md", "shares.md", "syscalls.md"):
        if (outcome / name).exists():
            print(f"{name}:\n{(outcome / name).read_text()}")
    print(outcome)
    return experiment.exit_code(outcome)


def run(ctx: RunContext, plan: Scenario[Any], backend_names: tuple[str, ...]) -> None:
    """The experiment as a kind's ``run``: ramp, profile at each level, tear down, report."""
    from concurrent.futures import ThreadPoolExecutor

    from harness.kinds import density
    from hostkit import meminfo

    (name,) = backend_names
    params: ProfileParams = plan.params
    out = ctx.writer.directory
    live: list[Instance] = []
    rows: list[tuple[int, float, float, float]] = []  # level, p50 ms ramp, sample, MiB each
    baseline = meminfo.available()
    with ThreadPoolExecutor(params.batch, thread_name_prefix="cvbench-launch") as pool:
        try:
            for level in params.levels:
                ramp = _launch(ctx, plan, name, level - len(live), live, pool, "launch_s")
                used = (baseline - meminfo.available()) / len(live) / 2**20
                pids = _our_pids(ctx.backends[name])
                tools = _start_tools(out, level, params, pids)
                first = len(live)
                try:
                    sample = _launch(ctx, plan, name, params.sample, live, pool,
                                     "profiled_launch_s")
                finally:
                    _stop_tools(tools)
                    ours = [*pids, *(p for instance in live[first:] for p in instance.pids)]
                    (out / f"pids-{level}.txt").write_text(",".join(map(str, ours)) + "\n")
                rows.append((level, median(ramp) * 1000, median(sample) * 1000, used))
                ctx.writer.flush()
        finally:
            density._teardown(ctx, name, live)
    write_reports(out, params, rows)


def _launch(ctx: RunContext, plan: Scenario[Any], name: str, count: int, live: list[Instance],
            pool: ThreadPoolExecutor, metric: str) -> list[float]:
    """``count`` more instances in batches, by the density kind's batch launch; each batch's
    launch time per instance, recorded as ``metric`` (``step``: the live count after it)."""
    from harness.kinds import density

    params: ProfileParams = plan.params
    times = []
    while count > 0:
        batch = min(params.batch, count)
        seconds = density._launch_batch(ctx, plan, name, batch, live, pool) / batch
        ctx.record([ctx.sample(plan, name, metric, seconds, "s", step=len(live))])
        times.append(seconds)
        count -= batch
    return times


def median(values: list[float]) -> float:
    import statistics

    return statistics.median(values) if values else 0.0


def _our_pids(backend: Any) -> list[int]:
    """This process and, for ``ours``, its fork server: the benchmark's own processes."""
    import os

    runtime = getattr(backend, "runtime", None)
    server = getattr(getattr(runtime, "server", None), "pid", None)
    return [os.getpid(), *([server] if server else [])]


def bpftrace_program(pids: list[int]) -> str:
    """The syscall-time program, filtered to ``pids`` and the fork server's children."""
    clauses = [f"pid == {pid}" for pid in pids]
    clauses += [f"curtask->real_parent->tgid == {pid}" for pid in pids[1:]]
    return BPFTRACE.replace("FILTER", " || ".join(clauses))


def _start_tools(out: Path, level: int, params: ProfileParams, pids: list[int]
                 ) -> list[subprocess.Popen[bytes]]:
    import subprocess
    import time

    tools = []
    if params.perf:
        tools.append(subprocess.Popen(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-a", "-g",
             "-o", str(out / f"perf-{level}.data")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    if params.bpftrace:
        with open(out / f"syscalls-{level}.txt", "wb") as output:
            tools.append(subprocess.Popen(["bpftrace", "-e", bpftrace_program(pids)],
                                          stdout=output, stderr=subprocess.STDOUT))
    if tools:
        time.sleep(3)  # both attach (bpftrace compiles its program first)
    return tools


def _stop_tools(tools: list[subprocess.Popen[bytes]]) -> None:
    import signal

    for tool in tools:
        tool.send_signal(signal.SIGINT)
    for tool in tools:
        tool.wait(60)


def perf_report(data: Path, children: bool) -> str:
    """``perf report`` of ``perf-<level>.data``, limited to the pids of ``pids-<level>.txt``
    (kept beside it as ``.txt`` or ``.children.txt``)."""
    import subprocess

    pids = data.with_name(data.name.replace("perf-", "pids-").replace(".data", ".txt"))
    command = ["perf", "report", "-i", str(data), "--stdio", "--sort", "sym", "-g", "none",
               "--percentage", "absolute", "--percent-limit", "0.02",
               "--children" if children else "--no-children"]
    if pids.exists():
        command.append(f"--pid={pids.read_text().strip()}")
    text = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    data.with_suffix(".children.txt" if children else ".txt").write_text(text)
    return text


def perf_costs(text: str, launches: int, children: bool) -> dict[str, float]:
    """symbol (``[k] name``) -> ms of CPU per launch, from a ``perf report --stdio`` of
    cpu-clock samples (its event count is in ns); with ``children`` each function's cost
    includes the functions it called (the report's first column)."""
    match = re.search(r"Event count \(approx\.\): (\d+)", text)
    total_ms = int(match.group(1)) / 1e6 if match else 0.0
    pattern = (r"\s*([\d.]+)%\s+[\d.]+%\s+\[(.)\]\s+(\S+)" if children
               else r"\s*([\d.]+)%\s+\[(.)\]\s+(\S+)")
    costs = {}
    for line in text.splitlines():
        if found := re.match(pattern, line):
            costs[f"[{found.group(2)}] {found.group(3)}"] = (
                float(found.group(1)) / 100 * total_ms / launches)
    return costs


def syscall_costs(text: str, launches: int) -> dict[str, tuple[float, float]]:
    """system call -> (µs per launch, calls per launch), from the bpftrace program's maps."""
    ns: dict[int, int] = {}
    calls: dict[int, int] = {}
    for line in text.splitlines():
        if found := re.match(r"@(ns|calls)\[(\d+)\]: (\d+)", line):
            (ns if found.group(1) == "ns" else calls)[int(found.group(2))] = int(found.group(3))
    return {SYSCALLS.get(n, str(n)): (ns[n] / 1000 / launches, calls.get(n, 0) / launches)
            for n in ns}


def launch_table(rows: list[tuple[int, float, float, float]]) -> list[str]:
    lines = ["| live | launch p50, ramp to it (ms) | launch p50, profiled sample (ms) | "
             "host MiB each (MemAvailable) |", "|---:|---:|---:|---:|"]
    return lines + [f"| {level} | {ramp:.2f} | {sample:.2f} | {used:.2f} |"
                    for level, ramp, sample, used in rows]


def shares_table(own: dict[int, dict[str, float]], total: dict[int, dict[str, float]]
                 ) -> list[str]:
    """Per level (ms per launch): the functions whose self time grew most from the first
    level to the last, :data:`KEY_FUNCTIONS` with their callees, and the sum."""
    levels = list(own)
    first, last = levels[0], levels[-1]
    growth = sorted(set(own[first]) | set(own[last]),
                    key=lambda n: own[last].get(n, 0) - own[first].get(n, 0), reverse=True)
    header = " | ".join(f"at {level}" for level in levels)
    lines = ["CPU ms per launch in the benchmark's own processes (perf cpu-clock samples "
             "× period ÷ launches).", "", "Functions whose own time grew most:", "",
             f"| function (self) | {header} |", "|---|" + "---:|" * len(levels)]
    lines += [f"| {n} | " + " | ".join(f"{own[lv].get(n, 0):.3f}" for lv in levels) + " |"
              for n in growth[:20]]
    lines += ["", "Key kernel paths, children included:", "",
              f"| function (with callees) | {header} |", "|---|" + "---:|" * len(levels)]
    for function in KEY_FUNCTIONS:
        key = f"[k] {function}"
        if any(key in total[lv] for lv in levels):
            lines.append(f"| {function} | " + " | ".join(
                f"{total[lv].get(key, 0):.3f}" for lv in levels) + " |")
    return lines + ["", "All of it (self time, every symbol):", "",
                    "| total | " + " | ".join(f"{sum(own[lv].values()):.2f}" for lv in levels)
                    + " |"]


def syscalls_table(costs: dict[int, dict[str, tuple[float, float]]]) -> list[str]:
    """The 25 system calls that took longest per launch at the last level."""
    levels = list(costs)
    first, last = levels[0], levels[-1]
    order = sorted(set(costs[first]) | set(costs[last]),
                   key=lambda n: costs[last].get(n, (0, 0))[0], reverse=True)
    lines = [f"| system call | µs per launch at {first} | at {last} | calls per launch |",
             "|---|---:|---:|---:|"]
    return lines + [f"| {n} | {costs[first].get(n, (0, 0))[0]:.0f} | "
                    f"{costs[last].get(n, (0, 0))[0]:.0f} | "
                    f"{costs[last].get(n, (0, 0))[1]:.1f} |" for n in order[:25]]


def write_reports(out: Path, params: ProfileParams,
                  rows: list[tuple[int, float, float, float]]) -> None:
    (out / "launch.md").write_text("\n".join(launch_table(rows)) + "\n")
    levels = [row[0] for row in rows]
    if params.perf and levels:
        own = {lv: perf_costs(perf_report(out / f"perf-{lv}.data", False), params.sample, False)
               for lv in levels}
        total = {lv: perf_costs(perf_report(out / f"perf-{lv}.data", True), params.sample, True)
                 for lv in levels}
        (out / "shares.md").write_text("\n".join(shares_table(own, total)) + "\n")
    if params.bpftrace and levels:
        costs = {lv: syscall_costs((out / f"syscalls-{lv}.txt").read_text(), params.sample)
                 for lv in levels}
        (out / "syscalls.md").write_text("\n".join(syscalls_table(costs)) + "\n")
