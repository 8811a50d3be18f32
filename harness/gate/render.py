"""A :class:`~harness.gate.compare.Comparison` as a terminal table (rich), as Markdown, or as
an HTML table (for the compare page, :mod:`harness.report.comparison`); the gate's
:class:`~harness.gate.confirm.Confirmation` as its verdict per metric."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

from harness.gate import verdicts
from harness.gate.compare import Comparison
from harness.gate.confirm import Confirmation, MetricVerdict
from harness.gate.stats import Row

if TYPE_CHECKING:
    from rich.console import Console

HEADERS = ("scenario", "backend", "metric", "n", "rule", "baseline", "candidate", "ratio", "p",
           "threshold", "verdict")
_RIGHT_ALIGNED = ("n", "baseline", "candidate", "ratio", "p", "threshold")
_STYLES = {verdicts.REGRESSION: "bold red", verdicts.IMPROVEMENT: "green",
           verdicts.NO_RATIO: "dim",
           verdicts.MISSING_IN_CANDIDATE: "yellow", verdicts.NEW_IN_CANDIDATE: "yellow"}


def fmt_value(value: float, unit: str) -> str:
    """A median in a readable unit: ms for seconds, MiB for bytes."""
    if math.isnan(value):
        return "-"
    if unit == "s":
        return f"{value:.3g} s" if abs(value) >= 1 else f"{value * 1000:.3g} ms"
    if unit == "bytes":
        return f"{value / (1024 * 1024):.3g} MiB"
    if unit == "ratio":
        return f"{value:.3g}×"
    return f"{value:.4g} {unit}".rstrip()


def fmt_ratio(ratio: float) -> str:
    return "-" if math.isnan(ratio) else f"{ratio:.3f} ({(ratio - 1) * 100:+.1f}%)"


def fmt_p(p_value: float) -> str:
    if math.isnan(p_value):
        return "-"
    return f"{p_value:.2e}" if p_value < 0.001 else f"{p_value:.3f}"


def cells(row: Row) -> tuple[str, ...]:
    """The row's cells, in the order of :data:`HEADERS`."""
    metric = f"{row.metric} [{row.variant}]" if row.variant else row.metric
    return (row.scenario, row.backend, metric, f"{row.n_base}/{row.n_cand}", row.rule or "-",
            fmt_value(row.base_median, row.unit), fmt_value(row.cand_median, row.unit),
            fmt_ratio(row.ratio), fmt_p(row.p_value), f"{row.threshold:.0%}", row.verdict)


def summary(comparison: Comparison) -> str:
    """One line: faults, regressions, improvements, metrics tested and shown."""
    tested = sum(1 for row in comparison.rows if row.tested)
    faults = f"{len(comparison.faults)} fault(s), " if comparison.faults else ""
    return (f"{faults}{len(comparison.regressions)} regression(s), "
            f"{len(comparison.improvements)} improvement(s), {tested} metric(s) by rank "
            f"(Mann-Whitney U, alpha {comparison.alpha:g}), "
            f"{sum(1 for row in comparison.rows if row.rule == verdicts.TOLERANCE)} by "
            f"tolerance, {len(comparison.rows)} shown")


def title(comparison: Comparison) -> str:
    mode = "ratios to the process floor" if comparison.normalized else "absolute figures"
    return f"cvbench compare: {comparison.baseline} → {comparison.candidate} ({mode})"


def to_markdown(comparison: Comparison) -> str:
    """The comparison as Markdown (for a CI job summary)."""
    lines = [f"### {title(comparison)}", "", f"**{summary(comparison)}**", ""]
    lines += [f"- **FAULT:** {fault}" for fault in comparison.faults]
    lines += [f"> {note}" for note in comparison.notes]
    if comparison.notes or comparison.faults:
        lines.append("")
    lines.append("| " + " | ".join(HEADERS) + " |")
    lines.append("|" + "|".join("---:" if header in _RIGHT_ALIGNED else "---"
                                for header in HEADERS) + "|")
    for row in comparison.rows:
        row_cells = list(cells(row))
        if row.regression:
            row_cells[-1] = f"**{verdicts.REGRESSION}**"
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row_cells) + " |")
    return "\n".join(lines) + "\n"


_CSS_CLASSES = {verdicts.REGRESSION: "regression", verdicts.IMPROVEMENT: "improvement",
                verdicts.MISSING_IN_CANDIDATE: "warn", verdicts.NEW_IN_CANDIDATE: "warn"}


def to_html_table(comparison: Comparison, rows: list[Row] | None = None) -> str:
    """The comparison's rows (or the given ones) as an HTML table, each row's class its
    verdict's."""
    head = "".join(f'<th class="num">{html.escape(h)}</th>' if h in _RIGHT_ALIGNED
                   else f"<th>{html.escape(h)}</th>" for h in HEADERS)
    lines = ['<div class="scroll"><table class="verdicts">',
             f"<thead><tr>{head}</tr></thead><tbody>"]
    for row in comparison.rows if rows is None else rows:
        css = _CSS_CLASSES.get(row.verdict, "")
        row_html = "".join(
            f'<td class="num">{html.escape(cell)}</td>' if header in _RIGHT_ALIGNED
            else f"<td>{html.escape(cell)}</td>" for header, cell in zip(HEADERS, cells(row),
                                                                       strict=True))
        lines.append(f'<tr class="{css}">{row_html}</tr>' if css else f"<tr>{row_html}</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def render(comparison: Comparison, console: Console | None = None) -> None:
    """Print the comparison as a terminal table (rich), its notes and its summary."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)
    table = Table(title=title(comparison))
    for header in HEADERS:
        table.add_column(header, justify="right" if header in _RIGHT_ALIGNED else "left")
    for row in comparison.rows:
        table.add_row(*(Text(cell) for cell in cells(row)), style=_STYLES.get(row.verdict))
    console.print(table)
    for note in comparison.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    for fault in comparison.faults:
        console.print(f"[bold red]FAULT:[/bold red] {fault}", highlight=False)
    colour = "red" if comparison.failed else "green"
    console.print(f"[{colour}]{summary(comparison)}[/{colour}]", highlight=False)


GATE_HEADERS = ("metric", "form", "rule", "threshold", "n per pair", "vs committed",
                "pair 1", "pair 2", "verdict", "why")


def gate_cells(line: MetricVerdict) -> tuple[str, ...]:
    """A metric's cells on the gate's verdict page, in the order of :data:`GATE_HEADERS`."""
    changes = [*line.changes, "-", "-"][:2]
    return (line.name, line.form, line.rule, f"{line.threshold:.0%}", line.sizes,
            line.committed, *changes, "FAIL" if line.failed else "pass", line.why)


def gate_markdown(confirmation: Confirmation) -> str:
    """The gate's verdict per metric and its last words, as Markdown."""
    lines = ["", "### The gate's verdict per metric", "",
             "| " + " | ".join(GATE_HEADERS) + " |", "|" + "---|" * len(GATE_HEADERS)]
    for line in confirmation.metric_verdicts():
        if line.failed or line.why not in (verdicts.OK, verdicts.WITHIN_TOLERANCE):
            lines.append("| " + " | ".join(cell.replace("|", "\\|")
                                           for cell in gate_cells(line)) + " |")
    lines.append("")
    lines += [f"- {line}" for line in confirmation.verdict_lines()]
    return "\n".join(lines) + "\n"


def gate_html(confirmation: Confirmation) -> str:
    """The gate's verdict per metric (every one) and its last words, as HTML."""
    head = "".join(f"<th>{html.escape(header)}</th>" for header in GATE_HEADERS)
    rows = []
    for line in confirmation.metric_verdicts():
        cells_html = "".join(f"<td>{html.escape(cell)}</td>" for cell in gate_cells(line))
        rows.append(f'<tr class="regression">{cells_html}</tr>' if line.failed
                    else f"<tr>{cells_html}</tr>")
    words = "".join(f"<li>{html.escape(line)}</li>" for line in confirmation.verdict_lines())
    return ("<h2>The gate's verdict per metric</h2>"
            "<p>Rule <em>rank</em>: a regression when the Mann-Whitney U test is significant "
            "and the median is worse than the threshold; <em>tolerance</em> (few values: one "
            "per pass or run): when the median is worse than the threshold. A metric fails "
            "the gate when it regressed in every pair of the baseline's code and this code "
            "run here; the change against the committed baseline is the screen.</p>"
            f'<ul>{words}</ul><div class="scroll"><table class="verdicts"><thead><tr>{head}'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
