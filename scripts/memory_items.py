"""What each isolation feature of a container costs in host memory (root; hold the host lock).

    flock /tmp/cvbench-host.lock .venv/bin/python scripts/memory_items.py --instances 500

Starts ``--instances`` idle ``ours`` containers (cold, the density spec) per variant, one
variant at a time, each time between two settled readings of ``/proc/meminfo`` and
``/proc/slabinfo`` (:mod:`harness.memory_items`), then stops them. Variants: the full spec,
then the same with one feature taken away (its network namespace, its ipc and uts
namespaces, its seccomp filter, eight of its nine cgroup hierarchies, its /proc, /dev and
/dev/pts mounts), a bridged network (a veth pair and a bridge port) and the plain process
(no isolation at all: the workload's own pages). Writes ``--out``/memory-items.md: KiB per
container of each item for each variant, and the cost of each feature (full minus the
variant without it). An unmeasured pass first grows the kernel's slab caches.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import memory_items, metrics  # noqa: E402
from harness.backends.base import InstanceSpec  # noqa: E402
from harness.backends.containers import container_spec  # noqa: E402
from imagestore import image as images  # noqa: E402
from runtime import cgroups  # noqa: E402
from runtime.container import Runtime  # noqa: E402
from runtime.spec import Spec  # noqa: E402

MIB = 1 << 20


def _without_namespaces(*kinds: str) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        spec.linux.namespaces = [ns for ns in spec.linux.namespaces if ns.type not in kinds]
    return change


def _without_seccomp(spec: Spec) -> None:
    spec.linux.seccomp = None


def _without_mounts(spec: Spec) -> None:
    spec.mounts = []
    spec.linux.masked_paths = []
    spec.linux.readonly_paths = []


VARIANTS: dict[str, tuple[str, Callable[[Spec], None] | None, bool]] = {
    # name -> (network mode, change to the spec, memory cgroup only)
    "full": ("none", None, False),
    "no netns": ("host", None, False),
    "no ipc+uts ns": ("none", _without_namespaces("ipc", "uts"), False),
    "no seccomp": ("none", _without_seccomp, False),
    "memory cgroup only": ("none", None, True),
    "no /proc /dev /dev/pts": ("none", _without_mounts, False),
    "bridge": ("bridge", None, False),
}
FEATURES = {  # feature -> the variant without it
    "network namespace (+ loopback)": "no netns",
    "ipc + uts namespaces (mqueue superblock)": "no ipc+uts ns",
    "seccomp filter": "no seccomp",
    "8 more cgroup hierarchies (of 9)": "memory cgroup only",
    "/proc, /dev, /dev/pts (3 superblocks)": "no /proc /dev /dev/pts",
}


def run_variant(name: str, image, count: int) -> tuple[float, memory_items.Counters,
                                                         memory_items.Counters]:
    network, change, memory_only = VARIANTS[name]
    runtime = Runtime()
    if memory_only:
        runtime.cgroups = cgroups.V1Driver(hierarchies=("memory",))
    live = []
    try:
        before_level = metrics.settled_memory_level()
        before = memory_items.read()
        for index in range(count):
            spec = container_spec(InstanceSpec(name=f"cvbench-mi{os.getpid()}-{index}",
                                               image=image, network=network))
            if change:
                change(spec)
            container = runtime.create(spec, spec.hostname)
            live.append(container)
            runtime.start(container)
            runtime.wait_ready(container, 60)
        time.sleep(5)
        after_level = metrics.settled_memory_level()
        after = memory_items.read()
    finally:
        runtime.cleanup()
        runtime.close()
    return (before_level.available - after_level.available) / count, before, after


def run_process(image, count: int) -> tuple[float, memory_items.Counters, memory_items.Counters]:
    before_level = metrics.settled_memory_level()
    before = memory_items.read()
    # as the process backend runs it: the image's busybox sh running /init, no isolation
    processes = [subprocess.Popen([str(image.rootfs / "bin" / "sh"), str(image.rootfs / "init")],
                                  stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                  env={"PATH": str(image.rootfs / "bin"), "HOME": "/"},
                                  start_new_session=True)
                 for _ in range(count)]
    try:
        time.sleep(5)
        after_level = metrics.settled_memory_level()
        after = memory_items.read()
    finally:
        for process in processes:
            os.killpg(process.pid, 9)  # the shell and its sleep
        for process in processes:
            process.wait()
    return (before_level.available - after_level.available) / count, before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated names of VARIANTS")
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/cvbench-memory-items"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    image = images.resolve()
    run_variant("full", image, args.instances)  # unmeasured: the slab caches grow once
    columns: dict[str, dict[str, float]] = {}
    available: dict[str, float] = {}
    tops: dict[str, list[tuple[str, float]]] = {}
    for name in [*args.variants.split(","), "process"]:
        if name == "process":
            per, before, after = run_process(image, args.instances)
        else:
            per, before, after = run_variant(name, image, args.instances)
        available[name] = per
        columns[name] = memory_items.itemise(before, after, args.instances)
        tops[name] = memory_items.top_caches(before, after, args.instances, 8)
        print(f"{name}: {per / MIB:.3f} MiB per instance (MemAvailable); items (KiB): "
              + ", ".join(f"{item} {value / 1024:.0f}" for item, value in columns[name].items())
              + "; top slabs: " + ", ".join(f"{c} {v / 1024:.0f}" for c, v in tops[name][:5]),
              flush=True)
    lines = [f"# Host memory per container, itemised ({args.instances} idle `ours` "
             "containers per variant, KiB each)", "",
             *memory_items.markdown(columns),
             "| **MemAvailable delta** | " + " | ".join(f"**{available[n] / 1024:.1f}**"
                                                      for n in columns) + " |", ""]
    if "full" in columns:
        lines += ["## What each feature costs (full minus the variant without it, KiB)", "",
                  "| feature | MemAvailable | slab | per-CPU | other items |",
                  "|---|---:|---:|---:|---|"]
        for feature, variant in FEATURES.items():
            if variant not in columns:
                continue
            full, other = columns["full"], columns[variant]
            diff = {k: full.get(k, 0) - other.get(k, 0) for k in full}
            rest = ", ".join(f"{memory_items.LABELS[k].split(' (')[0]} {v / 1024:.1f}"
                             for k, v in sorted(diff.items(), key=lambda kv: -abs(kv[1]))
                             if k not in ("slab", "slab_unreclaimable", "percpu")
                             and abs(v) >= 2048)
            lines.append(f"| {feature} | {(available['full'] - available[variant]) / 1024:.1f}"
                         f" | {diff.get('slab', 0) / 1024:.1f} | {diff.get('percpu', 0) / 1024:.1f}"
                         f" | {rest} |")
        if "bridge" in columns:
            lines.append(f"| bridge network instead of none (veth pair, bridge port) | "
                         f"{(available['bridge'] - available['full']) / 1024:.1f} | | | |")
    lines += ["", "## Slab caches that grew most (KiB per instance)", ""]
    for name, top in tops.items():
        lines.append(f"- {name}: " + ", ".join(f"{cache} {v / 1024:.1f}" for cache, v in top))
    (args.out / "memory-items.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
