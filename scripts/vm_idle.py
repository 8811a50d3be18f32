"""Idle CPU of TCG guests: boot N, let them settle, then read each QEMU's CPU time (root).

    flock /tmp/cvbench-host.lock .venv/bin/python scripts/vm_idle.py --backend qemu,libvirt \
        --guests 10 --seconds 20

Boots ``--guests`` guests of ``--memory`` MiB with the harness's backend (the guest a density
run boots, with the backend's defaults unless ``--cmdline-extra`` adds kernel options), waits
for every READY, idles ``--settle`` seconds, then measures over ``--seconds``: per guest, the
CPU time (user + system, all QEMU threads, from ``/proc/<pid>/task/*/stat``) as a percentage
of one CPU, and the wake-ups per second of each QEMU thread kind (voluntary + involuntary
context switches: ``CPU 0/TCG`` is the guest's vCPU, ``qemu-system-x86`` the main loop).
Prints one line per backend; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.backends import create as create_backend  # noqa: E402
from harness.backends.base import InstanceSpec  # noqa: E402
from imagestore import image as images  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def thread_stats(pid: int) -> dict[str, tuple[float, int]]:
    """thread name -> (CPU seconds, context switches), summed over threads of that name."""
    found: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for task in os.scandir(f"/proc/{pid}/task"):
        try:
            stat = Path(task.path, "stat").read_text()
            status = Path(task.path, "status").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        switches = sum(int(line.split()[1]) for line in status.splitlines()
                       if line.endswith("ctxt_switches") or "ctxt_switches:" in line)
        found[name][0] += (int(fields[11]) + int(fields[12])) / TICKS
        found[name][1] += switches
    return {name: (cpu, int(sw)) for name, (cpu, sw) in found.items()}


def measure(backend_name: str, args: argparse.Namespace, image) -> dict:
    options: dict = {"cmdline_extra": args.cmdline_extra} if args.cmdline_extra else {}
    for item in args.option:
        key, value = item.split("=", 1)
        options[key] = {"true": True, "false": False}.get(value.lower(), value)
    backend = create_backend(backend_name, **options)
    backend.prepare(image)
    live = []
    boots = []
    try:
        for index in range(args.guests):  # two at a time, each pair timed to READY
            spec = InstanceSpec(name=f"cvbench-idle{os.getpid()}-{index}", image=image,
                                guest_memory_mib=args.memory)
            if index % 2 == 0:
                began = time.monotonic()
            live.append(backend.start(spec))
            if len(live) % 2 == 0 or index == args.guests - 1:
                for instance in live[-2:]:
                    backend.wait_ready(instance, 300)
                boots.append(time.monotonic() - began)
        time.sleep(args.settle)
        pids = [instance.pids[0] for instance in live]
        before = {pid: thread_stats(pid) for pid in pids}
        began = time.monotonic()
        time.sleep(args.seconds)
        after = {pid: thread_stats(pid) for pid in pids}
        elapsed = time.monotonic() - began
    finally:
        for instance in live:
            try:
                backend.stop(instance)
                backend.remove(instance)
            except Exception as error:  # remove the rest anyway
                print(f"{instance.name}: {error}", file=sys.stderr)
        backend.cleanup()
    cpu = []
    wakeups: dict[str, list[float]] = defaultdict(list)
    for pid in pids:
        total = 0.0
        for name, (seconds, switches) in after[pid].items():
            old_seconds, old_switches = before[pid].get(name, (0.0, 0))
            total += seconds - old_seconds
            wakeups[name].append((switches - old_switches) / elapsed)
        cpu.append(100 * total / elapsed)
    return {"backend": backend_name, "guests": len(pids), "options": options,
            "pair_boot_s_p50": statistics.median(boots),
            "idle_cpu_percent_per_guest": statistics.median(cpu),
            "idle_cpu_percent_mean": statistics.mean(cpu),
            "wakeups_per_s": {name: statistics.median(v) for name, v in wakeups.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="qemu,libvirt")
    parser.add_argument("--guests", type=int, default=10)
    parser.add_argument("--memory", type=int, default=96)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cmdline-extra", default="")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="backend option, e.g. acpi=true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    image = images.resolve()
    results = []
    for name in args.backend.split(","):
        result = measure(name, args, image)
        results.append(result)
        top = sorted(result["wakeups_per_s"].items(), key=lambda kv: -kv[1])[:4]
        print(f"{name}: {result['idle_cpu_percent_per_guest']:.2f}% of a CPU per idle guest "
              f"(median of {result['guests']}; mean {result['idle_cpu_percent_mean']:.2f}%), "
              "wake-ups/s: " + ", ".join(f"{n} {w:.0f}" for n, w in top)
              + f"; two guests to READY: {result['pair_boot_s_p50']:.2f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
