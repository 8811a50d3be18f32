"""Profile container launches at several numbers of live containers (root; hold the host lock).

    flock /tmp/cvbench-host.lock .venv/bin/python scripts/launch_profile.py \
        --backend ours --levels 100,8000 --sample 200 --out /var/tmp/cvbench-profile

Ramps containers of one backend (``ours``, ``crun`` or ``runc``; the harness's backend, the
same spec as a density run, network ``none``, cold starts, batches started concurrently as
the density kind does) up to each level in turn; at each level it launches ``--sample`` more
while two Debian tools watch the whole host:

- ``perf record -e cpu-clock -a -g`` (a software clock, which works where a VM exposes no
  hardware counters),
  reported as each kernel function's share of the samples (``perf report --no-children
  --sort sym``), then compared across levels: ``shares.md`` lists the functions whose share
  grows most;
- ``bpftrace`` on the ``raw_syscalls`` tracepoints: time spent in each system call per
  launched container (``syscalls.md``), which shows *which* call grows.

Then it stops and removes every container. Outputs in ``--out``: ``perf-<level>.data``,
``perf-<level>.txt``, ``syscalls-<level>.txt``, ``shares.md``, ``syscalls.md``,
``launch.md`` (launch p50 per level).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.backends import create as create_backend  # noqa: E402
from harness.backends.base import Instance, InstanceSpec  # noqa: E402
from hostkit import meminfo  # noqa: E402
from imagestore import image as images  # noqa: E402

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
    434: "pidfd_open", 435: "clone3", 439: "faccessat2", 7000: "?",
}

BPFTRACE = r"""
tracepoint:raw_syscalls:sys_enter /FILTER/ { @start[tid] = nsecs; @id[tid] = args->id; }
tracepoint:raw_syscalls:sys_exit /@start[tid]/ {
    @ns[@id[tid]] = sum(nsecs - @start[tid]); @calls[@id[tid]] = count();
    delete(@start[tid]); delete(@id[tid]);
}
END { clear(@start); clear(@id); }
"""


def launch_batch(backend, pool, image, prefix: str, first: int, count: int) -> tuple[
        list[Instance], float]:
    """Start ``count`` containers concurrently, wait for each READY; (instances, seconds)."""
    began = time.perf_counter()
    specs = [InstanceSpec(name=f"{prefix}{first + i}", image=image) for i in range(count)]
    started = list(pool.map(backend.start, specs))
    list(pool.map(lambda inst: backend.wait_ready(inst, 120), started))
    return started, time.perf_counter() - began


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


def our_pids(backend) -> tuple[int, int | None]:
    """(this process, the fork server if the backend has one)."""
    runtime = getattr(backend, "_runtime", None)
    server = runtime.server.pid if runtime is not None else None
    return os.getpid(), server


def start_tools(out: Path, level: int, perf: bool, bpf: bool, pids: tuple[int, int | None]
                ) -> list[subprocess.Popen]:
    tools = []
    harness, server = pids
    clauses = [f"pid == {harness}"]
    if server:
        clauses += [f"pid == {server}", f"curtask->real_parent->tgid == {server}"]
    if perf:
        tools.append(subprocess.Popen(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-a", "-g",
             "-o", str(out / f"perf-{level}.data")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    if bpf:
        tools.append(subprocess.Popen(
            ["bpftrace", "-e", BPFTRACE.replace("FILTER", " || ".join(clauses))],
            stdout=open(out / f"syscalls-{level}.txt", "w"),
            stderr=subprocess.STDOUT))
    time.sleep(3)  # both attach (bpftrace compiles its program first)
    return tools


def stop_tools(tools: list[subprocess.Popen]) -> None:
    for tool in tools:
        tool.send_signal(signal.SIGINT)
    for tool in tools:
        tool.wait(60)


def perf_costs(data: Path, launches: int, children: bool) -> dict[str, float]:
    """symbol -> ms of CPU per launch in this benchmark's own processes (the harness, the fork
    server and the launched containers: ``pids-<level>.txt``), from ``perf report``; with
    ``children`` each function's cost includes the functions it called."""
    pids = data.with_name(data.name.replace("perf-", "pids-").replace(".data", ".txt"))
    command = ["perf", "report", "-i", str(data), "--stdio", "--sort", "sym", "-g", "none",
               "--percentage", "absolute", "--percent-limit", "0.02",
               "--children" if children else "--no-children"]
    if pids.exists():
        command.append(f"--pid={pids.read_text().strip()}")
    text = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    data.with_suffix(".children.txt" if children else ".txt").write_text(text)
    total_ms = 0.0
    match = re.search(r"Event count \(approx\.\): (\d+)", text)
    if match:
        total_ms = int(match.group(1)) / 1e6
    costs = {}
    for line in text.splitlines():
        if children:
            match = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[(.)\]\s+(\S+)", line)
        else:
            match = re.match(r"\s*([\d.]+)%\s+\[(.)\]\s+(\S+)", line)
        if match:
            costs[f"[{match.group(2)}] {match.group(3)}"] = (
                float(match.group(1)) / 100 * total_ms / launches)
    return costs


def syscall_costs(path: Path, launches: int) -> dict[str, tuple[float, float]]:
    """syscall -> (microseconds per launch, calls per launch)."""
    ns: dict[int, int] = {}
    calls: dict[int, int] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"@(ns|calls)\[(\d+)\]: (\d+)", line)
        if match:
            (ns if match.group(1) == "ns" else calls)[int(match.group(2))] = int(match.group(3))
    return {SYSCALLS.get(n, str(n)): (ns[n] / 1000 / launches, calls.get(n, 0) / launches)
            for n in ns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="ours")
    parser.add_argument("--levels", default="100,8000")
    parser.add_argument("--sample", type=int, default=200, help="launches profiled per level")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/cvbench-profile"))
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="backend option, e.g. pivot_root=true (ours)")
    parser.add_argument("--no-perf", action="store_true")
    parser.add_argument("--no-bpftrace", action="store_true")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    image = images.resolve()
    options = {}
    for item in args.option:
        key, value = item.split("=", 1)
        options[key] = {"true": True, "false": False}.get(value.lower(), value)
    backend = create_backend(args.backend, **options)
    backend.prepare(image)
    prefix = f"cvbench-prof{os.getpid()}-"
    live: list[Instance] = []
    report: list[tuple[int, float, float, float]] = []  # level, p50 ms ramp, sample, MiB each
    baseline = meminfo.available()
    try:
        with ThreadPoolExecutor(args.batch) as pool:
            for level in levels:
                ramp = []
                while len(live) < level:
                    count = min(args.batch, level - len(live))
                    started, seconds = launch_batch(backend, pool, image, prefix, len(live),
                                                    count)
                    live.extend(started)
                    ramp.append(seconds / count)
                    print(f"\r{len(live)} live, {seconds / count * 1000:.1f} ms each",
                          end="", flush=True)
                used = (baseline - meminfo.available()) / len(live) / 2**20
                pids = our_pids(backend)
                tools = start_tools(args.out, level, not args.no_perf, not args.no_bpftrace,
                                    pids)
                sample = []
                first_sampled = len(live)
                try:
                    done = 0
                    while done < args.sample:
                        count = min(args.batch, args.sample - done)
                        started, seconds = launch_batch(backend, pool, image, prefix,
                                                        len(live), count)
                        live.extend(started)
                        sample.append(seconds / count)
                        done += count
                finally:
                    stop_tools(tools)
                    ours = [p for p in pids if p] + [p for inst in live[first_sampled:]
                                                     for p in inst.pids]
                    (args.out / f"pids-{level}.txt").write_text(
                        ",".join(str(p) for p in ours) + "\n")
                report.append((level, statistics.median(ramp) * 1000 if ramp else 0.0,
                               statistics.median(sample) * 1000, used))
                print(f"\n{level}: sample p50 {report[-1][2]:.2f} ms per launch, "
                      f"{used:.2f} MiB each", flush=True)
    finally:
        began = time.perf_counter()
        for instance in reversed(live):
            try:
                backend.stop(instance)
                backend.remove(instance)
            except Exception as error:  # keep removing the rest
                print(f"teardown {instance.name}: {error}", file=sys.stderr)
        backend.cleanup()
        print(f"teardown of {len(live)}: {time.perf_counter() - began:.1f} s")
    write_reports(args, levels, report)


def write_reports(args: argparse.Namespace, levels: list[int],
                  report: list[tuple[int, float, float, float]]) -> None:
    out = args.out
    lines = ["| live | launch p50, ramp to it (ms) | launch p50, profiled sample (ms) | "
             "host MiB each (MemAvailable) |", "|---:|---:|---:|---:|"]
    lines += [f"| {level} | {ramp:.2f} | {sample:.2f} | {used:.2f} |"
              for level, ramp, sample, used in report]
    (out / "launch.md").write_text("\n".join(lines) + "\n")
    first, last = levels[0], levels[-1]
    if not args.no_perf:
        own = {level: perf_costs(out / f"perf-{level}.data", args.sample, False)
               for level in levels}
        total = {level: perf_costs(out / f"perf-{level}.data", args.sample, True)
                 for level in levels}
        names = set(own[first]) | set(own[last])
        growth = sorted(names, key=lambda n: own[last].get(n, 0) - own[first].get(n, 0),
                        reverse=True)
        header = " | ".join(f"at {level}" for level in levels)
        lines = ["CPU ms per launch in the benchmark's own processes (perf cpu-clock samples "
                 "× period ÷ launches).", "",
                 "Functions whose own time grew most:", "",
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
        lines += ["", "All of it (self time, every symbol):", "",
                  "| total | " + " | ".join(f"{sum(own[lv].values()):.2f}" for lv in levels)
                  + " |"]
        (out / "shares.md").write_text("\n".join(lines) + "\n")
    if not args.no_bpftrace:
        costs = {level: syscall_costs(out / f"syscalls-{level}.txt", args.sample)
                 for level in levels}
        names = set(costs[first]) | set(costs[last])
        order = sorted(names, key=lambda n: costs[last].get(n, (0, 0))[0], reverse=True)
        lines = [f"| system call | µs per launch at {first} | at {last} | calls per launch |",
                 "|---|---:|---:|---:|"]
        lines += [f"| {n} | {costs[first].get(n, (0, 0))[0]:.0f} | "
                  f"{costs[last].get(n, (0, 0))[0]:.0f} | {costs[last].get(n, (0, 0))[1]:.1f} |"
                  for n in order[:25]]
        (out / "syscalls.md").write_text("\n".join(lines) + "\n")
    for name in ("launch.md", "shares.md", "syscalls.md"):
        if (out / name).exists():
            print(f"\n{name}:\n{(out / name).read_text()}")


if __name__ == "__main__":
    main()
