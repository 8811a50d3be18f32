"""The report of one or more runs: ``report/index.html`` (one self-contained page),
``summary.md`` (the same, headline first, for PR comments and CI job summaries) and every
chart as PNG and SVG.

Both start with the headline (:mod:`~harness.report.headline`): per scenario and family, what
a reader came for in human units, with ratios to the family floor and to a chosen reference
backend and their confidence intervals; density scenarios add their backends side by side at
matched live counts, per ramp (:mod:`~harness.report.matched`, which also cuts the headline's
density figures to the range every ramp reached). Charts follow (each kind draws its own and
says what each shows: ``charts`` and ``captions`` of its declaration in
:mod:`harness.kinds.registry`), then the methodology generated from the metadata, the host
and versions, and the raw detail last, collapsed, with the host's counters apart from the
results.
A run with rungs of the isolation ladder (the floor launcher with several sets of steps) gets
its chart and table, "where the time goes" (:mod:`~harness.report.ladder`).
With several runs, each backend's series is labelled ``backend @ run`` so runs sit side by
side. :mod:`~harness.report.history` draws every metric across runs; the compare page is
:mod:`~harness.report.comparison`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from harness import methodology, normalize, results
from harness.backends import registry
from harness.charts import latency_chart
from harness.fleet import report as fleet_report
from harness.kinds import registry as kinds
from harness.kinds.density import MIB
from harness.kinds.density import charts as density_charts
from harness.kinds.memory import VIEWS as MEMORY_VIEWS
from harness.kinds.memory import charts as memory_chart
from harness.report import facts, headline, html, ladder, matched, tables
from harness.report.tables import summary_table
from hostkit.files import atomic_write

# Each kind draws its own charts (its registry entry's ``charts``); these names stay here for
# the notebook and other callers that draw one chart at a time.
__all__ = ["MEMORY_VIEWS", "MIB", "density_charts", "draw_charts", "latency_chart", "load",
           "memory_chart", "summary_table", "write_report"]

PAGE = "index.html"
SUMMARY = "summary.md"
def load(run_dirs: list[Path]) -> pd.DataFrame:
    """Samples of the given runs, with a ``series`` column naming backend (and run if several)."""
    frames = []
    for run_dir in run_dirs:
        frame = results.load_samples(run_dir)
        # one fixed order (process, ours, crun, runc, qemu, libvirt; cold before warm), not
        # the order of appearance; labelled backends (floor:namespaces) beside their backend,
        # as the suite listed them
        listed = results.read_metadata(run_dir).get("backend_order") or []
        backends = sorted(set(frame.backend.map(normalize.plain)), key=lambda name: (
            registry.rank(name), listed.index(name) if name in listed else len(listed), name))
        ranks = {
            "scenario": {name: index for index, name in enumerate(dict.fromkeys(
                frame.scenario))},  # as the run went
            "backend": {name: index for index, name in enumerate(backends)},
            "variant": {name: index for index, name in enumerate(headline.VARIANT_ORDER)},
        }
        frame = frame.sort_values(
            ["scenario", "backend", "variant"], kind="stable",
            key=lambda c: c.map(normalize.plain).map(ranks[str(c.name)]).fillna(
                len(ranks[str(c.name)])))
        # never mixed in a series: start variants, and workloads (the variant names the
        # workload and its parameters)
        own_series = frame["variant"].isin(["cold", "warm"]) | (frame["kind"] == "workload")
        frame["series"] = frame["backend"].where(
            ~own_series, frame["backend"] + " " + frame["variant"].astype(str))
        frame = fleet_report.label_hosts(frame)  # a fleet directory: "backend @ host"
        if len(run_dirs) > 1:
            frame["series"] = frame["series"] + " @ " + run_dir.name[:15]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def draw_charts(samples: pd.DataFrame, output: Path) -> list[Path]:
    """Every scenario's charts, drawn by its kind (a kind without charts, or one this
    installation does not know, e.g. of an old run or a plug-in, draws none)."""
    drawn: list[Path] = []
    for (scenario, kind), _ in samples.groupby(["scenario", "kind"], sort=False):
        draw = kinds.info(str(kind)).charts if str(kind) in kinds.names() else None
        if draw is not None:
            drawn += draw(samples, str(scenario), output)
    return drawn


def captions(samples: pd.DataFrame) -> dict[str, str]:
    """What each chart shows, for the page, by the chart's name (``<scenario>-<chart>``): as
    the scenario's kind declares it."""
    found: dict[str, str] = {}
    if samples.empty:
        return found
    for scenario, kind in samples[["scenario", "kind"]].drop_duplicates().itertuples(
            index=False):
        if str(kind) in kinds.names():
            found.update({f"{scenario}-{chart}": f"{scenario}: {text}"
                          for chart, text in kinds.info(str(kind)).captions.items()})
    return found


def markdown(samples: pd.DataFrame, run_dirs: list[Path], drawn: list[Path],
             headlines: list[headline.Table]) -> str:
    """``summary.md``: the headline first, then charts, method, host, and the raw detail."""
    metadata = {run_dir: results.read_metadata(run_dir) for run_dir in run_dirs}
    lines = ["# cvbench report", ""]
    lines += [fleet_report.run_line(run_dir) if fleet_report.is_fleet(run_dir)
              else f"- {facts.run_line(meta, run_dir.name)}" for run_dir, meta in metadata.items()]
    lines += ["", "## Headline", "", *tables.headline_markdown(headlines)]
    lines += matched.markdown(matched.tables(samples, metadata.values()))
    notes = [note for meta in metadata.values() for note in facts.notes(meta)]
    if notes:
        lines += ["**Not as planned:**", "", *(f"- {note}" for note in notes), ""]
    pngs = [chart for chart in drawn if chart.suffix == ".png"]
    if pngs:
        lines += ["## Charts", "", f"The page `{PAGE}` next to this file has them inline.", ""]
        lines += [f"![{chart.stem}]({chart.name})" for chart in pngs]
        lines.append("")
    lines += ladder.markdown(samples, by_run_id(metadata)) if not samples.empty else []
    for run_dir, meta in metadata.items():
        if fleet_report.is_fleet(run_dir):  # its hosts side by side, then the methodology
            lines += fleet_report.section(run_dir, samples)
            continue
        section = methodology.section(meta)
        if len(run_dirs) > 1:
            section = [section[0].replace("Methodology", f"Methodology of `{run_dir.name}`"),
                       *section[1:]]
        lines += section
    lines += methodology.order_effects(samples) if not samples.empty else []
    for run_dir, meta in metadata.items():
        lines += [f"## Host and versions{f' of `{run_dir.name}`' if len(run_dirs) > 1 else ''}",
                  "", *facts.facts_markdown(meta), ""]
    if not samples.empty:
        lines += ["## Raw detail", "", *tables.detail_markdown(samples)]
    return "\n".join(lines) + "\n"


def page(samples: pd.DataFrame, run_dirs: list[Path], drawn: list[Path],
         headlines: list[headline.Table]) -> str:
    """``index.html``: the same sections as the Markdown, charts inline as SVG."""
    metadata = {run_dir: results.read_metadata(run_dir) for run_dir in run_dirs}
    title = f"cvbench report: {', '.join(run_dir.name for run_dir in run_dirs)}"
    body = ["<h1>cvbench report</h1>"]
    body += [f'<p class="lede">{html.inline(facts.run_line(meta, run_dir.name))}</p>'
             for run_dir, meta in metadata.items()]
    body.append('<nav><a href="#headline">Headline</a><a href="#charts">Charts</a>'
                '<a href="#methodology">Methodology</a><a href="#host">Host and versions</a>'
                '<a href="#detail">Raw detail</a></nav>')
    body += ['<section id="headline">', "<h2>Headline</h2>", tables.headline_html(headlines),
             matched.html(matched.tables(samples, metadata.values()))]
    notes = [note for meta in metadata.values() for note in facts.notes(meta)]
    if notes:
        body.append('<div class="warn"><strong>Not as planned:</strong><ul>'
                    + "".join(f"<li>{html.esc(note)}</li>" for note in notes) + "</ul></div>")
    body += ["</section>", '<section id="charts">', "<h2>Charts</h2>"]
    svgs = [chart for chart in drawn if chart.suffix == ".svg"]
    described = {**captions(samples), **ladder.captions(svgs)}
    if not svgs:
        body.append("<p>No charts: no kind of this run draws any.</p>")
    for index, chart in enumerate(svgs):
        body.append(html.figure(html.svg(chart, f"c{index}"),
                                described.get(chart.stem, chart.stem),
                                f"chart-{chart.stem}"))
    if not samples.empty:
        body.append(html.markdown(ladder.markdown(samples, by_run_id(metadata)), shift=0))
    body += ["</section>", '<section id="methodology">']
    for run_dir, meta in metadata.items():
        if fleet_report.is_fleet(run_dir):  # its hosts side by side, then the methodology
            body.append(html.markdown(fleet_report.section(run_dir, samples)))
            continue
        section = methodology.section(meta)
        if len(run_dirs) > 1:
            section = [section[0].replace("Methodology", f"Methodology of {run_dir.name}"),
                       *section[1:]]
        body.append(html.markdown(section))
    if not samples.empty:
        body.append(html.markdown(methodology.order_effects(samples)))
    body += ["</section>", '<section id="host">', "<h2>Host and versions</h2>"]
    for run_dir, meta in metadata.items():
        if len(run_dirs) > 1:
            body.append(f"<h3>{html.esc(run_dir.name)}</h3>")
        body += [html.facts(facts.host_facts(meta)), "<h3>Versions</h3>",
                 html.facts(facts.versions(meta))]
        if meta.get("scenario_text"):
            body.append("<details><summary>Scenario file</summary><pre>"
                        f"{html.esc(meta['scenario_text'])}</pre></details>")
    body += ["</section>", '<section id="detail">', "<h2>Raw detail</h2>",
             tables.detail_html(samples) if not samples.empty else "<p>No samples.</p>",
             "</section>"]
    return html.page(title, body)


def by_run_id(metadata: Mapping[Path, dict]) -> dict[str, dict]:
    """The runs' metadata by run id (as the samples' ``run_id`` column names them)."""
    return {str(meta.get("run_id", run_dir.name)): meta for run_dir, meta in metadata.items()}


def write_report(run_dirs: list[Path], output: Path | None = None,
                 reference: Mapping[str, str] | None = None) -> Path:
    """Write every chart, ``summary.md`` and ``index.html``; return the output directory.

    ``reference``: family → backend (:func:`harness.report.headline.references`).
    """
    output = output or (run_dirs[0] / "report")
    output.mkdir(parents=True, exist_ok=True)
    samples = load(run_dirs)
    drawn = draw_charts(samples, output) if not samples.empty else []
    if not samples.empty:  # a run with rungs of the isolation ladder: where the time goes
        drawn += ladder.charts(samples, by_run_id(
            {run_dir: results.read_metadata(run_dir) for run_dir in run_dirs}), output)
    headlines = headline.tables(samples, reference) if not samples.empty else []
    atomic_write(output / SUMMARY, markdown(samples, run_dirs, drawn, headlines))
    atomic_write(output / PAGE, page(samples, run_dirs, drawn, headlines))
    return output
