"""The methodology section of a report, generated from a run's metadata: what each backend
did before the clock and inside it (per start variant), how stop and clean-up were timed,
which cgroup controllers and isolation profile it used, and the turn order's seed — so a
reader can judge a ratio without reading code."""

from __future__ import annotations

from typing import Any

import pandas as pd

from hostkit import seccomp_readback

# How the report's ratios get their confidence intervals (harness.report.headline).
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0

RULES = (
    "Ratios compare like with like: cold with cold, warm with warm, containers with the "
    "`process` floor and VMs with the `qemu` floor, from the same run.",
    "**cold**: nothing of the instance exists before the clock (a resident server or daemon "
    "may run); **warm**: the backend's own preparation runs before the clock.",
    "start → READY: from the start (or resume) request until the scenario's readiness rule "
    "holds, the same rule for every backend (below; by default the workload's READY line).",
    "stop: from the stop request until the instance's last process exited (seen through a "
    "pidfd; for VMs QEMU's exit); clean-up (`cleanup_s`) is timed apart.",
    "Turns run in an order shuffled each round from the seed below; each sample records its "
    "position in the round.",
    "A ratio is the ratio of two medians of the same run, scenario, metric and variant; a "
    "reference backend (`cvbench report --reference`) is compared within its own family only.",
    f"Confidence intervals of ratios: {CONFIDENCE:.0%}, percentile bootstrap of the ratio of "
    f"medians, both samples resampled independently, {BOOTSTRAP_RESAMPLES:,} resamples, seed "
    f"{BOOTSTRAP_SEED}; a ratio whose interval excludes 1 is a real difference, one whose "
    "interval includes 1 may be noise.",
    "Memory: a host-wide delta (MemAvailable, or the memory the kernel and processes account "
    "for) divided by the instance count moves by a few MiB on its own; small or negative "
    "per-instance deltas at low counts are noise, shown as measured.",
)


def section(metadata: dict[str, Any]) -> list[str]:
    """Markdown lines of the methodology of one run."""
    lines = ["## Methodology", "", *(f"- {rule}" for rule in RULES), ""]
    seed = metadata.get("order_seed")
    lines.append(f"Turn order seed: `{seed}` (repeat with `cvbench run --seed {seed}`)."
                 if seed is not None else "Turn order: not recorded (an older run).")
    lines += ["", readiness(metadata), ""]
    lines += [host_kind(metadata), ""]
    layout = cgroup_layouts(metadata)
    if layout:
        lines += [layout, ""]
    filters = kernel_filters(metadata)
    if filters:
        lines += [filters, ""]
    imported = bool((metadata.get("image") or {}).get("launch"))
    for name, facts in metadata.get("backends", {}).items():
        lines += _backend(name, facts, imported)
    return lines


def readiness(metadata: dict[str, Any]) -> str:
    """One line: what READY meant in each scenario (``metadata["ready"]``: the rule written
    and in words; an older run's is the READY line)."""
    rules = metadata.get("ready")
    if not rules:
        return ("Readiness: the workload's READY line on its stdout (not recorded: an older "
                "run).")
    shown = {f"`{facts['rule']}`: {facts['meaning']}" for facts in rules.values()}
    if len(shown) == 1:
        return f"Readiness (every scenario): {shown.pop()}."
    return "Readiness: " + "; ".join(
        f"scenario {name}: `{facts['rule']}`, {facts['meaning']}"
        for name, facts in rules.items()) + "."


def host_kind(metadata: dict[str, Any]) -> str:
    """One line: the host's cgroup mode and init system, which decide how the container
    backends make cgroups and filter devices (v1 device lists, or v2 BPF programs)."""
    host = metadata.get("host", {})
    mode = host.get("cgroup_mode", "not recorded")
    how = {"v2": "cgroup v2 only: limits in one unified tree, device rules as BPF programs "
                 "attached to each container's cgroup",
           "hybrid": "hybrid cgroups: v1 controllers (device rules in devices.list) beside a "
                     "cgroup2 mount",
           "v1": "cgroup v1: a tree per controller, device rules in devices.list"}
    return (f"Host kind: cgroup mode `{mode}` ({how.get(mode, 'unknown')}); init system "
            f"`{host.get('init_system', 'not recorded')}`.")


def _backend(name: str, facts: dict[str, Any], imported: bool = False) -> list[str]:
    """A backend's method table and facts; ``imported``: the run's image was imported, so
    how a VM runs one (``imported_image``) is said too."""
    lines = [f"### {name}", ""]
    method = facts.get("method")
    if not method:
        return [*lines, "No method recorded (an older run, or a plug-in backend).", ""]
    lines += ["| variant | before the clock | inside the clock |", "|---|---|---|"]
    for variant, steps in method.get("variants", {}).items():
        lines.append(f"| {variant} | {_cell(steps.get('before_clock'))} | "
                     f"{_cell(steps.get('inside_clock'))} |")
    lines += ["", f"- stop: {method.get('stop', '-')}", f"- clean-up: {method.get('remove', '-')}"]
    if facts.get("cgroup_controllers"):
        lines.append(f"- cgroup controllers: {', '.join(facts['cgroup_controllers'])}")
    manager = facts.get("cgroup_manager") or facts.get("cgroup_driver")
    if manager:
        lines.append(f"- cgroup manager: {manager}")
    if facts.get("devices"):
        lines.append(f"- device rules: {'; '.join(facts['devices'])}")
    device_filter = facts.get("device_filter")
    if isinstance(device_filter, dict):
        lines.append(f"- device filter: {_device_filter(device_filter)}")
    elif device_filter:
        lines.append(f"- device filter: {device_filter}")
    security = dict(facts.get("security") or {})
    kernel_filter = security.pop("kernel_filter", None)
    for key, value in security.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list | tuple) else value
        if isinstance(value, dict):
            shown = ", ".join(f"{k} {v}" for k, v in value.items())
        lines.append(f"- {key.replace('_', ' ')}: {shown}")
    if isinstance(kernel_filter, dict):
        lines.append(f"- seccomp filter in the kernel: {_kernel_filter(kernel_filter)}")
    for key in ("accel", "accel_reason", "guest", *(("imported_image",) if imported else ())):
        if key in facts:
            lines.append(f"- {key.replace('_', ' ')}: {facts[key]}")
    return [*lines, ""]


def cgroup_layouts(metadata: dict[str, Any]) -> str | None:
    """One line stating the cgroup layout the harness gave the container backends
    (``cgroup_layout`` of each one's metadata): where a container's cgroup is, how many shards,
    what was made before the first start and with which settings, once if it is the same for
    all of them (but the parent's name), else each backend's. None if none recorded one."""
    found = {name: facts["cgroup_layout"] for name, facts in metadata.get("backends", {}).items()
             if isinstance(facts.get("cgroup_layout"), dict)}
    if not found:
        return None

    def shape(layout: dict[str, Any]) -> str:
        return (f"`{layout.get('container', '-')}`, {layout.get('shards', '-')} shards; "
                f"{layout.get('prepared', '-')}, with: {layout.get('parent_settings', '-')}")

    shapes = {name: shape(layout) for name, layout in found.items()}
    parents = ", ".join(f"{name} `{layout.get('parent', '-')}`" for name, layout in found.items())
    head = ("- Cgroup layout of the container backends, chosen by the harness (each runtime "
            "makes the path it is given): ")
    if len(set(shapes.values())) == 1:
        return (f"{head}the same for {', '.join(found)}: **yes**. "
                f"{next(iter(shapes.values()))}; parents: {parents}.")
    return (f"{head}the same for {', '.join(found)}: **no**. "
            + "; ".join(f"{name}: {text}, parent `{found[name].get('parent', '-')}`"
                        for name, text in shapes.items()) + ".")


def kernel_filters(metadata: dict[str, Any]) -> str | None:
    """One line comparing the seccomp programs the kernel held for each container backend's
    probe containers (``security.kernel_filter``): the same program or not, and if not, for
    each different one, what differs from the first backend's (filter and instruction
    counts, the first differing instruction, a shared tail) and what its runtime adds.
    None if no backend recorded one."""
    found: list[tuple[str, tuple[seccomp_readback.Filter, ...]]] = []
    additions: dict[str, str] = {}
    errors = []
    for name, facts in metadata.get("backends", {}).items():
        recorded = (facts.get("security") or {}).get("kernel_filter")
        if not isinstance(recorded, dict):
            continue
        for variant, summary in recorded.items():
            if not isinstance(summary, dict):
                continue
            if "error" in summary:
                errors.append(f"{name} {variant}: not read ({summary['error']})")
            elif "programs" in summary:
                found.append((f"{name} {variant}", seccomp_readback.from_summary(summary)))
                additions[name] = str(recorded.get("runtime_additions", "not recorded"))
    if not found and not errors:
        return None
    groups: list[tuple[list[str], tuple[seccomp_readback.Filter, ...]]] = []
    for label, filters in found:
        for labels, first in groups:
            if seccomp_readback.difference(first, filters) is None:
                labels.append(label)
                break
        else:
            groups.append(([label], filters))
    same = "yes" if len(groups) == 1 and not errors else "no" if len(groups) > 1 else "unknown"
    parts = []
    for number, (labels, filters) in enumerate(groups):
        text = f"{', '.join(labels)}: {_stack(filters)}"
        if number:
            reference = groups[0]
            text += (f", against {reference[0][0]}: "
                     f"{seccomp_readback.difference(reference[1], filters)}; what "
                     f"{labels[0].split()[0]} adds: {additions[labels[0].split()[0]]}")
        parts.append(text)
    return ("- Seccomp filter the kernel holds, read back from a running probe container of "
            f"each container backend (PTRACE_SECCOMP_GET_FILTER): same program: **{same}**. "
            + "; ".join(parts + errors) + ".")


def _stack(filters: tuple[seccomp_readback.Filter, ...]) -> str:
    digest = seccomp_readback.summary(filters)["sha256"][:12]
    counts = "+".join(str(f.instructions) for f in filters) or "0"
    flags = {name for f in filters for name in seccomp_readback.flag_names(f.flags)}
    return (f"{len(filters)} filter{'s' if len(filters) != 1 else ''}, {counts} instructions"
            + (f", flags {', '.join(sorted(flags))}" if flags else "") + f" (sha256 `{digest}`)")


def _kernel_filter(found: dict[str, Any]) -> str:
    """A backend's own line: per variant its filters, and what the runtime adds."""
    variants = []
    for variant, summary in found.items():
        if not isinstance(summary, dict):
            continue
        if "error" in summary:
            variants.append(f"{variant}: not read ({summary['error']})")
        else:
            variants.append(f"{variant}: {_stack(seccomp_readback.from_summary(summary))}")
    return "; ".join(variants) + f"; added by the runtime: {found.get('runtime_additions', '-')}"


def _device_filter(found: dict[str, Any]) -> str:
    """The BPF device programs observed on a v2 container's cgroup, in a few words."""
    programs = [p for p in found.get("programs") or [] if isinstance(p, dict)]
    if not programs:
        return "none attached to the container's cgroup"
    return "; ".join(
        f"{p.get('type', 'BPF')} program" + (f" {p['name']}" if p.get("name") else "")
        + (f", {p['instructions']} instructions" if p.get("instructions") else "")
        + (f" ({p['attach']})" if p.get("attach") else "") for p in programs) + \
        " attached to the container's cgroup"


def _cell(text: Any) -> str:
    return str(text or "-").replace("|", "\\|")


def order_effects(samples: pd.DataFrame, metric: str = "start_to_ready_s") -> list[str]:
    """Markdown table: the median of ``metric`` by position in the round, per backend and
    variant, so an order effect shows (going first or last should not matter)."""
    data = samples[(samples.metric == metric) & samples.position.notna()]
    if data.empty or data.position.nunique() < 2:
        return []
    table = (data.assign(position=data.position.astype(int))
             .pivot_table(index=["backend", "variant"], columns="position", values="value",
                          aggfunc="median"))
    positions = list(table.columns)
    lines = [f"## Order effects: median {metric} by position in the round", "",
             "| backend | variant | " + " | ".join(str(p) for p in positions) + " |",
             "|---|---|" + "---:|" * len(positions)]
    for (backend, variant), row in table.iterrows():
        cells = " | ".join("-" if pd.isna(row[p]) else _seconds(row[p]) for p in positions)
        lines.append(f"| {backend} | {variant or '-'} | {cells} |")
    return [*lines, "", *_after_same_backend(data, metric)]


def _after_same_backend(data: pd.DataFrame, metric: str) -> list[str]:
    """Markdown table: the median of ``metric`` after a turn of the same backend and after a
    turn of another one (what the kernel or the runtime keeps warm between two launches)."""
    if "repetition" not in data or "scenario" not in data:
        return []
    turns = data[data.repetition.notna()].sort_values("position", kind="stable")
    previous = turns.groupby(["scenario", "repetition"], sort=False).backend.shift()
    turns = turns.assign(after_same=turns.backend == previous)[previous.notna()]
    if turns.after_same.nunique() < 2:
        return []
    table = turns.groupby(["backend", "variant", "after_same"], sort=False).value \
        .agg(["median", "count"]).unstack("after_same")
    lines = [f"## Order effects: median {metric} after a turn of the same backend or another",
             "", "| backend | variant | after the same (n) | after another (n) |",
             "|---|---|---:|---:|"]
    for (backend, variant), row in table.iterrows():
        cells = [("-" if pd.isna(row[("median", after)])
                  else f"{_seconds(row[('median', after)])} ({int(row[('count', after)])})")
                 for after in (True, False)]
        lines.append(f"| {backend} | {variant or '-'} | {cells[0]} | {cells[1]} |")
    return [*lines, ""]


def _seconds(value: float) -> str:
    return f"{value:.3g} s" if value >= 1 else f"{value * 1000:.3g} ms"
