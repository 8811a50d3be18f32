"""``cvbench compare`` with a fleet directory: the regression gate, host by host.

- fleet → fleet: each host of the candidate against the same host (inventory name) of the
  baseline fleet;
- run or baselines directory → fleet: each host of the candidate against that baseline (a
  directory of baselines per machine kind gives each host the one of its CPU model);
- fleet → run: refused; name one host's run instead (``FLEET/hosts/<host>``).

Each pair is an ordinary :func:`harness.gate.compare.compare_runs` of two run directories
(``--normalized``: each against its own host's floors). A host that is in the baseline but
failed or is missing in the candidate, or whose runs cannot be compared, fails the gate
(exit 1), unless no host could be compared at all (exit 2, CompareError).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness import results
from harness.fleet import fleetdir
from harness.gate.compare import Comparison, compare_runs
from harness.gate.errors import CompareError

if TYPE_CHECKING:
    from harness.gate.thresholds import Thresholds


@dataclass
class FleetComparison:
    """Per host, a comparison or one line saying why there is none."""

    baseline: str
    candidate: str
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        failed = any(c.failed for c in self.comparisons.values())
        return 1 if failed or self.problems else 0

    def summary_lines(self) -> list[str]:
        lines = []
        for host, comparison in self.comparisons.items():
            faults = "".join(f"; FAULT: {fault}" for fault in comparison.faults)
            lines.append(f"host {host}: {len(comparison.regressions)} regression(s), "
                         f"{len(comparison.improvements)} improvement(s){faults}")
        lines += [f"host {host}: not gated: {problem}" for host, problem in self.problems.items()]
        return lines


def involves_fleet(base_dir: Path, cand_dir: Path) -> bool:
    return fleetdir.is_fleet(base_dir) or fleetdir.is_fleet(cand_dir)


def compare_fleet(base_dir: Path, cand_dir: Path, thresholds: Thresholds | None = None,
                  alpha: float = 0.05, normalized: bool = False,
                  allow_image_change: bool = False) -> FleetComparison:
    """Gate every host (see the module's docstring); CompareError when none can be gated."""
    base_dir, cand_dir = Path(base_dir), Path(cand_dir)
    if not fleetdir.is_fleet(cand_dir):
        raise CompareError(f"{base_dir} is a fleet run and {cand_dir} is not: gate a fleet "
                           f"run against it, or name one host's run ({base_dir}/hosts/<host>)")
    outcome = FleetComparison(baseline=base_dir.name, candidate=cand_dir.name)
    cand_runs = fleetdir.host_runs(cand_dir)
    cand_hosts = results.read_metadata(cand_dir).get("hosts", {})
    if fleetdir.is_fleet(base_dir):
        base_runs = fleetdir.host_runs(base_dir)
        hosts = list(dict.fromkeys([*base_runs, *cand_runs]))
    else:
        base_runs = {host: base_dir for host in cand_hosts}
        hosts = list(cand_hosts)
    for host in hosts:
        if host not in base_runs:
            outcome.problems[host] = "not in the baseline fleet"
            continue
        if host not in cand_runs:
            error = cand_hosts.get(host, {}).get("error")
            outcome.problems[host] = (f"no run in the candidate ({error})" if error
                                      else "not in the candidate fleet")
            continue
        try:
            comparison = compare_runs(base_runs[host], cand_runs[host], thresholds, alpha,
                                      normalized=normalized,
                                      allow_image_change=allow_image_change)
        except (CompareError, results.ResultsError) as error:
            outcome.problems[host] = str(error)
            continue
        base_name = f"{base_dir.name}/{host}" if fleetdir.is_fleet(base_dir) \
            else comparison.baseline
        outcome.comparisons[host] = dataclasses.replace(
            comparison, baseline=base_name, candidate=f"{cand_dir.name}/{host}")
    if not outcome.comparisons:
        why = "; ".join(f"{host}: {problem}" for host, problem in outcome.problems.items())
        raise CompareError(f"no host of {cand_dir} could be gated ({why or 'no host'})")
    return outcome


def render(outcome: FleetComparison) -> tuple[str, int]:
    """Print every host's table and the per-host summary; (the Markdown, the exit code)."""
    from rich.console import Console

    from harness.gate import render as gate_render

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    markdown = [f"## cvbench compare: fleet {outcome.baseline} → {outcome.candidate}", ""]
    for comparison in outcome.comparisons.values():
        gate_render.render(comparison, console)
        markdown.append(gate_render.to_markdown(comparison))
    lines = outcome.summary_lines()
    colour = "red" if outcome.exit_code else "green"
    for line in lines:
        console.print(f"[{colour}]{line}[/{colour}]", highlight=False)
    markdown += ["", *(f"- {line}" for line in lines), ""]
    return "\n".join(markdown), outcome.exit_code
