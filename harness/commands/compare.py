"""Baseline vs candidate: a metric regresses only if significantly *and* materially worse.

``cvbench compare BASELINE CANDIDATE``: the regression gate (:mod:`harness.gate`). Prints the
table, optionally writes it as Markdown (``--markdown``, and appended to
``$GITHUB_STEP_SUMMARY`` when set) and as a page (``--html``: verdicts, distributions side by
side, methodology, host and versions); exit 1 on a regression or a fault (something of the
baseline absent from the candidate, an incomplete candidate, a recorded failure), 2 when the
runs cannot be compared.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands.base import Subparsers, UsageError, results_dir, results_dir_option
from harness.gate.stats import DEFAULT_ALPHA
from hostkit import validate

if TYPE_CHECKING:
    from harness.fleet import gate as fleet_gate
    from harness.gate.compare import Comparison
    from harness.gate.confirm import Confirmation
    from harness.gate.thresholds import Thresholds

log = logging.getLogger(__name__)


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare", parents=[results_dir_option()],
        help="gate a candidate run against a baseline (exit 1 on a regression)",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="exit codes: 0 the gate passes; 1 it fails: a regression (confirmed, with "
               "--confirm), or a fault (a scenario, backend or variant of the baseline absent "
               "from the candidate, an incomplete candidate run, a failure it recorded); 2 the "
               "runs cannot be compared (bad input).",
    )
    parser.add_argument("baseline", type=validate.RUN, help="baseline run directory or run id")
    parser.add_argument("candidate", type=validate.RUN,
                        help="candidate run directory or run id")
    parser.add_argument("--normalized", action="store_true",
                        help="compare ratios to each run's own process floor")
    parser.add_argument("--thresholds", metavar="FILE", type=validate.PATH,
                        help="TOML: default = 0.10 and a [metrics] table")
    parser.add_argument("--alpha", type=validate.ALPHA, default=DEFAULT_ALPHA,
                        help=f"significance level, {validate.ALPHA.describe()} "
                             f"(default {DEFAULT_ALPHA})")
    parser.add_argument("--markdown", metavar="FILE", type=validate.PATH,
                        help="also write the table as Markdown")
    parser.add_argument("--html", metavar="FILE", type=validate.PATH,
                        help="also write a self-contained page: verdicts, both distributions "
                             "side by side, methodology, host and versions")
    parser.add_argument("--allow-image-change", action="store_true",
                        help="compare runs made with different image digests")
    parser.add_argument("--confirm", metavar="SUITE", type=validate.PATH,
                        help="the gate: run SUITE (a path in the repository) with the "
                             "baseline's commit on this machine and judge the candidate "
                             "against it in absolute figures and ratios (a second pair, the "
                             "baseline's code first, for what the first found); fail only on "
                             "what regressed in both. The baseline given is the screen")
    parser.set_defaults(func=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from harness import baseline, hostinfo, results
    from harness.fleet import gate as fleet_gate
    from harness.gate import render
    from harness.gate.compare import compare_runs
    from harness.gate.errors import CompareError
    from harness.gate.thresholds import Thresholds
    from hostkit.files import atomic_write

    if args.confirm and not (hostinfo.REPO / args.confirm).is_file():
        raise UsageError(f"--confirm {args.confirm}: no such suite in {hostinfo.REPO}")
    try:
        base_dir = (Path(args.baseline) if baseline.baselines(Path(args.baseline))
                    else results.resolve_run(args.baseline, results_dir(args)))
        cand_dir = results.resolve_run(args.candidate, results_dir(args))
        thresholds = Thresholds.load(args.thresholds) if args.thresholds else Thresholds()
        if fleet_gate.involves_fleet(base_dir, cand_dir):  # gated host by host
            if args.confirm:
                log.warning("--confirm: a fleet is gated host by host without it")
            return _fleet(args, fleet_gate.compare_fleet(
                base_dir, cand_dir, thresholds, args.alpha, normalized=args.normalized,
                allow_image_change=args.allow_image_change))
        comparison = compare_runs(base_dir, cand_dir, thresholds, args.alpha,
                                  normalized=args.normalized,
                                  allow_image_change=args.allow_image_change)
    except (results.ResultsError, CompareError) as error:
        raise UsageError(str(error)) from None
    render.render(comparison)
    markdown = render.to_markdown(comparison)
    exit_code = comparison.exit_code
    confirmation = None
    if args.confirm:
        confirmation = _confirm(args, comparison, cand_dir, thresholds)
        markdown += confirmation_markdown(confirmation)
        exit_code = confirmation.exit_code
    if args.markdown:
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, markdown)
        log.info("Markdown written to %s", path)
    if args.html:
        from harness.report import comparison as page

        written = page.write_page(comparison, base_dir, cand_dir, Path(args.html),
                                  gate=render.gate_html(confirmation) if confirmation else "")
        log.info("page written to %s", written)
        again = confirmation.against_reference if confirmation else None
        if again is not None and again.baseline_dir and again.candidate_dir:
            html_path = Path(args.html)
            written = page.write_page(again, again.baseline_dir, again.candidate_dir,
                                      html_path.with_stem(f"{html_path.stem}-reference"))
            log.info("page of the check against the baseline's code written to %s", written)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as summary:
            summary.write(markdown)
        log.info("Markdown appended to %s (GITHUB_STEP_SUMMARY)", step_summary)
    return exit_code


def _confirm(args: argparse.Namespace, comparison: Comparison, cand_dir: Path,
             thresholds: Thresholds) -> Confirmation:
    """Confirm the comparison's regressions on this machine; print the check and the verdict."""
    from harness.gate import render
    from harness.gate.confirm import confirm

    confirmation = confirm(comparison, cand_dir, args.confirm, thresholds, args.alpha,
                           allow_image_change=args.allow_image_change)
    for pair in confirmation.pairs:
        render.render(pair.ratios)
        render.render(pair.absolute)
    for line in confirmation.verdict_lines():
        print(line)
    return confirmation


def confirmation_markdown(confirmation: Confirmation) -> str:
    """The check against the baseline's code and the verdict, as Markdown."""
    from harness.gate import render

    text = "".join("\n" + render.to_markdown(comparison) for pair in confirmation.pairs
                   for comparison in (pair.ratios, pair.absolute))
    return text + render.gate_markdown(confirmation)


def _fleet(args: argparse.Namespace, outcome: fleet_gate.FleetComparison) -> int:
    """A fleet gated per host: every host's table, Markdown where asked; the exit code."""
    from harness.fleet import gate as fleet_gate
    from hostkit.files import atomic_write

    markdown, exit_code = fleet_gate.render(outcome)
    if args.markdown:
        atomic_write(Path(args.markdown), markdown)
    if args.html:
        log.warning("--html: no page for a fleet comparison yet (the Markdown has every host)")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as summary:
            summary.write(markdown)
    return exit_code
