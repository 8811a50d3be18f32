"""``cvbench items``: what each isolation feature of a container costs in host memory (root).

A memory-kind run (K idle instances per backend, settled, the host's delta itemised from
kernel counters: :mod:`harness.memory_items`) of ``ours`` as it is, of variants of it with
one feature taken away (:data:`VARIANTS`, :mod:`harness.commands.stripped`), and of the
``process`` floor (no isolation: the workload's own pages). ``ours`` gets one unmeasured pass
first, which grows the kernel's slab caches; the variants are measured in an order shuffled
from the run's seed. Writes ``memory-items.md`` into the run directory (under ``--out``): KiB
per instance of each item for each backend, and the cost of each feature, ``ours`` minus the
variant without it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import experiment
from harness.commands.base import Subparsers
from hostkit import validate

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Variant:
    """A backend of the run: ``ours``, or ``ours`` lacking ``feature``."""

    name: str  # its backend name in the run
    feature: str  # what it lacks, as the cost table names it ("": nothing)
    without: str = ""  # StrippedBackend's option ("": ours itself)
    network: str = "none"


FULL = "ours"
FLOOR = "process"
VARIANTS = (
    Variant("ours-no-netns", "network namespace (+ loopback)", network="host"),
    Variant("ours-no-ipc-uts", "ipc + uts namespaces (mqueue superblock)", without="ipc-uts"),
    Variant("ours-no-seccomp", "seccomp filter", without="seccomp"),
    Variant("ours-memory-cgroup-only", "8 more cgroup hierarchies (of 9)", without="cgroups"),
    Variant("ours-no-mounts", "/proc, /dev/pts (2 superblocks)", without="mounts"),
    Variant("ours-bridge", "", network="bridge"),  # not a feature taken away: one added
)
NAMES = validate.Names(tuple(v.name for v in VARIANTS), what="variant", separator=",")
OUT = "/var/tmp/cvbench-memory-items"
REPORT = "memory-items.md"
AVAILABLE = "mem_host_delta_per_instance_bytes"
ITEM_PREFIX, ITEM_SUFFIX = "mem_item_", "_bytes"


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "items", help="what each isolation feature of a container costs in host memory (root)",
        description=(__doc__ or "").split("\n\n")[0], parents=[experiment.options(OUT, 60.0)])
    parser.add_argument("--instances", type=validate.INSTANCES, default=500,
                        help=f"idle instances per backend, {validate.INSTANCES.describe()} "
                             "(default 500)")
    parser.add_argument("--variants", type=NAMES,
                        help="comma-separated variants of ours (default: all; on a cgroup v2 "
                             "host all but ours-memory-cgroup-only)")
    parser.add_argument("--settle", type=validate.DURATION_S, default=5.0,
                        help=f"idle time before each reading, {validate.DURATION_S.describe()}")
    parser.add_argument("--seed", type=validate.SEED, help="the backends' order's seed")
    parser.set_defaults(func=handle)
    return parser


def chosen(text: str | None, v2: bool) -> tuple[Variant, ...]:
    """The variants ``--variants`` names (default: every one this host can run)."""
    if text:
        names = NAMES.split(text)
        return tuple(v for v in VARIANTS if v.name in names)
    return tuple(v for v in VARIANTS if not (v2 and v.without == "cgroups"))


def handle(args: argparse.Namespace) -> int:
    import dataclasses

    from harness import results, scenario
    from harness.backends import registry
    from runtime import cgroups

    variants = chosen(args.variants, cgroups.detect_mode() == "v2")
    ours = registry.info(FULL)
    infos = [dataclasses.replace(
        ours, name=v.name, summary=f"{FULL} without its {v.feature or v.network}", sweeper=None,
        target="harness.commands.stripped:StrippedBackend" if v.without else ours.target)
        for v in variants]
    plan = scenario.make(
        "memory", name="memory-items", instances=args.instances, settle_s=args.settle,
        warmup=0, passes=1, timeout_s=args.timeout,
        overrides={FULL: {"warmup": 1}, **{v.name: {"network": v.network} for v in variants}})
    options = {v.name: {"without": v.without} for v in variants if v.without}
    with experiment.registered(backends=infos):
        outcome = experiment.run("items", plan,
                                 (FULL, *(v.name for v in variants), FLOOR), options,
                                 Path(args.out), quiet=args.quiet, seed=args.seed)
    if isinstance(outcome, int):
        return outcome
    text = "\n".join(report(results.load_samples(outcome), variants, args.instances)) + "\n"
    (outcome / REPORT).write_text(text)
    print(text, end="")
    print(outcome)
    return experiment.exit_code(outcome)


def columns(samples: pd.DataFrame) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per backend: item -> bytes per instance (the medians of the run's ``mem_item_*``
    samples), and the MemAvailable delta per instance."""
    items: dict[str, dict[str, float]] = {}
    available: dict[str, float] = {}
    medians = samples.groupby(["backend", "metric"], sort=False).value.median()
    for (backend, metric), value in medians.items():
        if metric.startswith(ITEM_PREFIX) and metric.endswith(ITEM_SUFFIX):
            item = metric[len(ITEM_PREFIX):-len(ITEM_SUFFIX)]
            items.setdefault(backend, {})[item] = float(value)
        elif metric == AVAILABLE:
            available[backend] = float(value)
    return items, available


def report(samples: pd.DataFrame, variants: tuple[Variant, ...], instances: int) -> list[str]:
    """``memory-items.md``: the itemised table per backend, then what each feature costs."""
    from harness import memory_items

    items, available = columns(samples)
    order = [name for name in (FULL, *(v.name for v in variants), FLOOR) if name in items]
    table = {name: items[name] for name in order}
    lines = [f"# Host memory per container, itemised ({instances} idle instances per backend, "
             "KiB each)", "", *memory_items.markdown(table),
             "| **MemAvailable delta** | " + " | ".join(
                 f"**{available.get(name, float('nan')) / 1024:.1f}**" for name in order) + " |"]
    costs = feature_costs(items, available, variants)
    if costs:
        lines += ["", "## What each feature costs (ours minus the variant without it, KiB)", "",
                  "| feature | MemAvailable | slab | per-CPU | other items |",
                  "|---|---:|---:|---:|---|", *costs]
    return lines


def feature_costs(items: dict[str, dict[str, float]], available: dict[str, float],
                  variants: tuple[Variant, ...]) -> list[str]:
    """One table row per variant measured beside ``ours``: the feature's cost, KiB per
    instance (the bridge variant's row: what a bridged network adds)."""
    from harness import memory_items

    if FULL not in items:
        return []
    full = items[FULL]
    rows = []
    for variant in variants:
        if variant.name not in items:
            continue
        other = items[variant.name]
        sign = 1 if variant.feature else -1  # the bridge variant has more, not less
        diff = {key: sign * (full.get(key, 0.0) - other.get(key, 0.0)) for key in full}
        rest = ", ".join(
            f"{memory_items.LABELS[key].split(' (')[0]} {value / 1024:.1f}"
            for key, value in sorted(diff.items(), key=lambda kv: -abs(kv[1]))
            if key not in ("slab", "slab_unreclaimable", "percpu") and abs(value) >= 2048)
        delta = sign * (available.get(FULL, 0.0) - available.get(variant.name, 0.0))
        what = variant.feature or "bridge network instead of none (veth pair, bridge port)"
        rows.append(f"| {what} | {delta / 1024:.1f} | {diff.get('slab', 0.0) / 1024:.1f} | "
                    f"{diff.get('percpu', 0.0) / 1024:.1f} | {rest} |")
    return rows
