"""What a run ran on, from its metadata: host, accel, image, versions, and what failed."""

from __future__ import annotations

from typing import Any

from harness.report import units

IN_METHODOLOGY = ("method", "security", "cgroup_controllers", "devices", "accel_reason")


def run_line(metadata: dict[str, Any], name: str) -> str:
    """One line: run id, status, date, commit, host (cgroup mode, init system), accel."""
    host = metadata.get("host", {})
    return (f"run `{name}`: status **{metadata.get('status')}**, started "
            f"{metadata.get('started_at', '?')}, commit "
            f"`{str(metadata.get('git_commit', ''))[:12]}`, {host.get('cpu_model', '?')} "
            f"({host.get('cpus', '?')} CPUs), kernel {host.get('kernel', '?')}, cgroups "
            f"{host.get('cgroup_mode', '?')}, init {host.get('init_system', '?')}, accel "
            f"{metadata.get('accel', {}).get('accel', '?')}")


def host_facts(metadata: dict[str, Any]) -> list[tuple[str, str]]:
    host = metadata.get("host", {})
    accel = metadata.get("accel", {})
    image = metadata.get("image", {})
    found = [
        ("run", str(metadata.get("run_id", ""))),
        ("status", str(metadata.get("status", ""))),
        ("started / finished", f"{metadata.get('started_at', '?')} / "
                               f"{metadata.get('finished_at', '?')}"),
        ("suite", f"{metadata.get('suite', '?')} ({metadata.get('suite_file', '-')})"),
        ("git commit", str(metadata.get("git_commit", "?"))),
        ("turn order seed", str(metadata.get("order_seed", "not recorded"))),
        ("host", f"{host.get('hostname', '?')}: {host.get('cpu_model', '?')}, "
                 f"{host.get('cpus', '?')} CPUs, "
                 + (f"{units.mebibytes(host['mem_total_bytes'])} memory, "
                    if isinstance(host.get("mem_total_bytes"), int | float) else "")
                 + f"machine kind {host.get('machine_kind', '-')}"),
        ("kernel, cgroups, init", f"{host.get('kernel', '?')}, cgroup mode "
                                  f"{host.get('cgroup_mode', '?')}, init system "
                                  f"{host.get('init_system', 'not recorded')}"),
        ("accel", f"{accel.get('accel', '?')}" + (f" ({accel['reason']})"
                                                 if accel.get("reason") else "")),
        ("image", f"{image.get('name', '?')}, {image.get('digest', '?')}"),
        ("schema version", str(metadata.get("schema_version", "?"))),
    ]
    if isinstance(metadata.get("empty_cgroup_bytes"), int):
        found.append(("empty container cgroup", f"{metadata['empty_cgroup_bytes'] / 1024:,.0f} KiB "
                      "of kernel memory on this host now (it grows with the most superblocks "
                      "the host has had at once since boot: docs/scale.md)"))
    return found


def versions(metadata: dict[str, Any]) -> list[tuple[str, str]]:
    """Package versions, then each backend's own facts (its versions, launcher, guest)."""
    found = [("packages", ", ".join(f"{k} {v}" for k, v in metadata.get("versions", {}).items())
              or "-")]
    for name, facts in metadata.get("backends", {}).items():
        shown = []
        for key, value in facts.items():
            if key in IN_METHODOLOGY:
                continue
            if isinstance(value, dict):
                shown += [f"{key}.{k} {v}" for k, v in value.items()]
            else:
                shown.append(f"{key} {value}")
        found.append((name, "; ".join(shown) or "-"))
    return found


def notes(metadata: dict[str, Any]) -> list[str]:
    """What did not go as planned: failures noted during the run, clean-up failures."""
    found = []
    if metadata.get("status") != "complete":
        found.append(f"the run is {metadata.get('status', 'of unknown status')}"
                     + (f": {metadata['error']}" if metadata.get("error") else ""))
    for failure in metadata.get("failures", []) or []:
        found.append(f"{failure.get('scenario', '?')}/{failure.get('backend', '?')}: "
                     f"{failure.get('reason', '')}")
    for failure in metadata.get("cleanup_failures", []) or []:
        found.append(f"clean-up: {failure}")
    for scenario, backends in (metadata.get("density") or {}).items():
        if isinstance(backends, dict):
            for backend, ramps in backends.items():  # a list of ramps; one dict before
                for summary in ramps if isinstance(ramps, list) else [ramps]:
                    if isinstance(summary, dict) and summary.get("stopped_by") not in (
                            None, "max_instances"):
                        which = (f"ramp {summary['ramp'] + 1}" if isinstance(
                            summary.get("ramp"), int) else "ramp")
                        found.append(f"{scenario}/{backend}: {which} stopped by "
                                     f"{summary['stopped_by']} at {summary.get('instances')} "
                                     "instances")
    return found


def facts_markdown(metadata: dict[str, Any]) -> list[str]:
    lines = ["| fact | value |", "|---|---|"]
    lines += [f"| {key} | {_md(value)} |" for key, value in host_facts(metadata)]
    lines += [f"| {key} | {_md(value)} |" for key, value in versions(metadata)]
    return lines


def _md(text: str) -> str:
    return text.replace("|", "\\|")
