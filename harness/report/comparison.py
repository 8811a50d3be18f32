"""The compare page: baseline vs candidate as one self-contained HTML page.

The gate's verdict per metric (:func:`harness.gate.render.to_html_table`), then for every
compared metric the two distributions side by side per backend and variant (what the gate
compared: ratios to the family floors with ``--normalized``, else absolute figures), each pair
headed by its verdict; then the candidate's methodology and both runs' host and versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness import baseline, methodology, normalize, results
from harness.gate import render, verdicts
from harness.report import facts, html, units
from hostkit.files import atomic_write

if TYPE_CHECKING:
    import pandas as pd

    from harness.gate.compare import Comparison

VERDICT_COLOURS = {verdicts.REGRESSION: "#b42318", verdicts.IMPROVEMENT: "#1a7f37"}


def resolve_baseline(base_dir: Path, cand_dir: Path) -> Path:
    """The run a baseline argument stands for (a directory of baselines per machine kind
    gives the one the gate chose)."""
    if baseline.is_run(base_dir):
        return base_dir
    return baseline.choose(base_dir, baseline.kind_of(cand_dir)).directory


def _frame(run_dir: Path, normalized: bool) -> pd.DataFrame:
    frame = normalize.load_normalized(run_dir) if normalized else results.load_samples(run_dir)
    frame = frame[verdicts.gated(frame)]
    return frame.assign(variant=frame.variant.map(normalize.plain))


def charts(comparison: Comparison, base: pd.DataFrame, cand: pd.DataFrame, output: Path
           ) -> list[tuple[str, str, Path]]:
    """One SVG per compared metric with at least two values on a side: ``(scenario, metric,
    path)``."""
    import numpy as np

    from harness.charts import accel_summary, plain_numbers, plt, save

    drawn = []
    keys = list(dict.fromkeys((row.scenario, row.metric) for row in comparison.rows))
    for scenario, metric in keys:
        rows = [row for row in comparison.rows
                if row.scenario == scenario and row.metric == metric
                and max(row.n_base, row.n_cand) >= 2]
        if not rows:
            continue
        unit = rows[0].unit
        both = [f[(f.scenario == scenario) & (f.metric == metric)] for f in (base, cand)]
        factor, unit_name = units.scale(unit, np.concatenate([f.value for f in both]))
        figure, axis = plt.subplots(figsize=(max(6.0, 1.5 * len(rows) + 2), 4.2))
        rng = np.random.default_rng(0)
        labels = []
        for index, row in enumerate(rows):
            for side, (frame, colour) in enumerate(zip(both, ("#8c959f", "#0b5394"),
                                                       strict=True)):
                values = frame[(frame.backend == row.backend)
                               & (frame.variant == row.variant)].value.to_numpy(float) * factor
                if not len(values):
                    continue
                where = index + (side - 0.5) * 0.36
                axis.boxplot([values], positions=[where], widths=0.28, showfliers=False,
                             patch_artist=True, boxprops={"facecolor": colour, "alpha": 0.35},
                             medianprops={"color": colour})
                axis.scatter(where + rng.uniform(-0.08, 0.08, len(values)), values, s=7,
                             color=colour, alpha=0.6, zorder=3)
            labels.append(f"{row.backend}\n{row.variant or 'no variant'}\n{row.verdict}")
        axis.set_xticks(range(len(rows)), labels, fontsize=7)
        for tick, row in zip(axis.get_xticklabels(), rows, strict=True):
            tick.set_color(VERDICT_COLOURS.get(row.verdict, "black"))
        positive = np.concatenate([f.value.to_numpy(float) for f in both]) * factor
        positive = positive[np.isfinite(positive)]
        if len(positive) and positive.min() > 0 and positive.max() / positive.min() > 20:
            axis.set_yscale("log")
            plain_numbers(axis)
        shown = "ratio to the family floor" if unit == "ratio" else unit_name
        axis.set_ylabel(shown)
        axis.scatter([], [], color="#8c959f", label=f"baseline {comparison.baseline[:24]}")
        axis.scatter([], [], color="#0b5394", label=f"candidate {comparison.candidate[:24]}")
        axis.legend(fontsize=7)
        axis.set_title(f"{scenario}: {metric}, {shown} (baseline left, candidate right)\n"
                       f"{accel_summary(both[1] if len(both[1]) else both[0])}", fontsize=9)
        axis.grid(axis="y", alpha=0.3, which="both")
        drawn.append((scenario, metric, save(figure, output, f"compare-{scenario}-{metric}",
                                             formats=("svg",))[0]))
    return drawn


def page(comparison: Comparison, base_dir: Path, cand_dir: Path, gate: str = "") -> str:
    """The compare page; ``gate``: the gate's verdict per metric (HTML), shown first."""
    import tempfile

    base_dir = resolve_baseline(base_dir, cand_dir)
    base = _frame(base_dir, comparison.normalized)
    cand = _frame(cand_dir, comparison.normalized)
    metas = {"baseline": results.read_metadata(base_dir),
             "candidate": results.read_metadata(cand_dir)}
    css = "regression" if comparison.failed else "improvement"
    verdict = ("FAULT" if comparison.faults else "REGRESSION" if comparison.regressions
               else "no regression")
    body = [f"<h1>{html.esc(render.title(comparison))}</h1>",
            f'<p class="verdict {css}">{verdict}: {html.esc(render.summary(comparison))}</p>',
            '<p class="lede">A metric is judged by the rule its sample sizes call for: '
            "<em>rank</em> (eight values a side or more), a regression when the Mann-Whitney "
            "U test finds the change significant <em>and</em> the medians differ by more than "
            "its threshold; <em>tolerance</em> (fewer: one figure per pass or run), when the "
            "medians differ by more than its threshold. "
            + ("Compared: each backend's ratio to its family floor (<code>process</code> for "
               "containers, <code>qemu</code> for VMs) in its own run, same variant."
               if comparison.normalized else "Compared: absolute figures.") + "</p>",
            '<nav><a href="#verdicts">Verdicts</a><a href="#charts">Distributions</a>'
            '<a href="#methodology">Methodology</a><a href="#host">Host and versions</a></nav>']
    if gate:
        body.append(f'<section id="gate">{gate}</section>')
    if comparison.faults:
        body.append('<div class="regression"><ul>' + "".join(
            f"<li>FAULT: {html.esc(fault)}</li>" for fault in comparison.faults) + "</ul></div>")
    if comparison.notes:
        body.append('<div class="warn"><ul>' + "".join(
            f"<li>{html.esc(note)}</li>" for note in comparison.notes) + "</ul></div>")
    changes = comparison.regressions + comparison.improvements
    body += ['<section id="verdicts">', "<h2>Verdict per metric</h2>"]
    if changes:
        body += ["<h3>Regressions and improvements</h3>",
                 render.to_html_table(comparison, changes), "<h3>Every metric</h3>"]
    body += [render.to_html_table(comparison), "</section>",
             '<section id="charts">', "<h2>Distributions, baseline beside candidate</h2>"]
    with tempfile.TemporaryDirectory(prefix="cvbench-compare-") as scratch:
        drawn = charts(comparison, base, cand, Path(scratch))
        for index, (scenario, metric, path) in enumerate(drawn):
            body.append(html.figure(html.svg(path, f"k{index}"),
                                    f"{scenario}: {metric}, every sample, baseline (grey) "
                                    "beside candidate (blue); the verdict under each pair",
                                    f"chart-{scenario}-{metric}"))
    if not drawn:
        body.append("<p>No metric with two values or more on a side.</p>")
    body += ["</section>", '<section id="methodology">',
             html.markdown(methodology.section(metas["candidate"])), "</section>",
             '<section id="host">', "<h2>Host and versions</h2>"]
    pairs = [dict(facts.host_facts(meta) + facts.versions(meta)) for meta in metas.values()]
    keys = list(dict.fromkeys([*pairs[0], *pairs[1]]))
    body.append(html.table(("fact", "baseline", "candidate"),
                           [(key, pairs[0].get(key, "-"), pairs[1].get(key, "-"))
                            for key in keys]))
    body.append("</section>")
    return html.page(render.title(comparison), body)


def write_page(comparison: Comparison, base_dir: Path, cand_dir: Path, path: Path,
               gate: str = "") -> Path:
    """Write the compare page to ``path``; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, page(comparison, Path(base_dir), Path(cand_dir), gate))
    return path

