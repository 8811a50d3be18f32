"""The headline tables and the raw detail as Markdown (``summary.md``, PR comments, CI job
summaries) and as HTML (``index.html``), from the same data."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from harness import methodology, normalize
from harness.report import units
from harness.report.headline import MIN_CI_SAMPLES, Ratio, Row, Table, is_input

if TYPE_CHECKING:
    import pandas as pd

LEGEND = (
    "Median and p95 in human units (three significant figures); n = samples. "
    "× floor: ratio of this median to the family floor's median (`process` for containers, "
    "`qemu` for VMs) of the same run and variant; × reference: the same to the reference "
    "backend you chose (`--reference`), within its family only; × ours warm, × its own "
    "cold: a restore row's ratio to ours' warm start (containers) or to the same guest's cold "
    "boot (VMs), the one ratio across variants, shown for restore rows only. "
    f"In brackets the {methodology.CONFIDENCE:.0%} bootstrap confidence interval of the ratio: "
    "**bold** when it excludes 1 (a real difference), plain when it includes 1 (may be noise); "
    f"no CI: fewer than {MIN_CI_SAMPLES} samples on a side."
)
NOISE_NOTE = "≤ 0: noise"


def _value(row: Row, which: str) -> str:
    value = row.median if which == "median" else row.p95
    if which == "p95" and (not row.measure.tail or row.n < 2):
        return "-"
    text = units.human(value, row.measure.unit)
    if row.measure.unit == "bytes" and value <= 0:
        text += f" ({NOISE_NOTE})"
    return text


def ratio_text(ratio: Ratio | None, markdown: bool = True) -> str:
    """``**4.12×** (3.90–4.40)``, ``1.02× (0.95–1.10)``, ``1 (floor)``, ``- (why)``."""
    if ratio is None:
        return ""
    if ratio.note in ("floor", "reference"):
        return f"1 ({ratio.note})"
    if not math.isfinite(ratio.value):
        return f"- ({ratio.note})" if ratio.note else "-"
    text = units.ratio(ratio.value)
    if ratio.real and markdown:
        text = f"**{text}**"
    if ratio.has_interval:
        text += f" ({units.interval(ratio.low, ratio.high)})"
    elif ratio.note:
        text += f" ({ratio.note})"
    return text


def _headers(table: Table) -> list[str]:
    headers = ["measure", *(["run"] if len(table.runs) > 1 else []), "backend", "variant", "n",
               "median", "p95" if table.has_tail else None, table.floor_header,
               table.reference_header or None, table.anchor_header or None]
    return [h for h in headers if h is not None]


def _fixed_cells(table: Table, row: Row) -> list[str]:
    """The cells between the measure and the ratios: run, backend, variant, n, median, p95."""
    cells = [*([row.run[:15]] if len(table.runs) > 1 else []),
             row.backend, row.variant or "-", str(row.n), _value(row, "median")]
    if table.has_tail:
        cells.append(_value(row, "p95"))
    return cells


def _ratios(table: Table, row: Row) -> list[Ratio | None]:
    anchored = bool(table.anchor_header)
    if not row.measure.ratio:
        return [None] * (1 + bool(table.reference) + anchored)
    return [row.to_floor, *([row.to_reference] if table.reference else []),
            *([row.to_anchor] if anchored else [])]


def _cells(table: Table, row: Row, first: bool) -> list[str]:
    label = f"**{row.measure.label}**" if first else ""
    return [label, *_fixed_cells(table, row),
            *(ratio_text(ratio) for ratio in _ratios(table, row))]


def headline_markdown(tables: list[Table]) -> list[str]:
    """Markdown lines: a ``###`` heading and a table per scenario and family."""
    if not tables:
        return ["No results to summarise."]
    lines = [LEGEND, ""]
    for table in tables:
        headers = _headers(table)
        lines += [f"### {table.title} (floor `{table.floor}`"
                  + (f", reference `{table.reference}`)" if table.reference else ")"), "",
                  "| " + " | ".join(headers) + " |",
                  "|" + "|".join("---:" if h in ("n", "median", "p95") or h.startswith("×")
                                 else "---" for h in headers) + "|"]
        previous = None
        for row in table.rows:
            cells = _cells(table, row, row.measure is not previous)
            previous = row.measure
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        notes = [f"{m.label}: {m.note}" for m in dict.fromkeys(r.measure for r in table.rows)
                 if m.note]
        if notes:
            lines += ["", "<sub>" + "; ".join(notes) + "</sub>"]
        lines.append("")
    return lines


def headline_html(tables: list[Table]) -> str:
    from harness.report.html import esc

    if not tables:
        return "<p>No results to summarise.</p>"
    from harness.kinds import registry as kinds

    parts = [f'<p class="lede">{_legend_html()}</p>']
    scenario = None
    for table in tables:
        if table.scenario != scenario:
            scenario = table.scenario
            what = kinds.info(table.kind).summary if table.kind in kinds.names() else table.kind
            parts.append(f"<h3>{esc(scenario)} <span class=\"note\">({esc(what)})</span></h3>")
        headers = _headers(table)[1:]  # the measure heads its group of rows instead
        numeric = {i for i, h in enumerate(headers)
                   if h in ("n", "median", "p95") or h.startswith("×")}
        caption = (f"<strong>{esc(table.title)}</strong>: every ratio pairs the same run and "
                   f"variant; floor <code>{esc(table.floor)}</code>"
                   + (f", reference <code>{esc(table.reference)}</code>" if table.reference
                      else ""))
        out = [f'<div class="scroll"><table class="headline" data-scenario="{esc(table.scenario)}"'
               f' data-family="{esc(table.family)}">',
               f"<caption>{caption}</caption>",
               "<thead><tr>" + "".join(
                   f'<th class="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(headers)) + "</tr></thead><tbody>"]
        previous = None
        for row in table.rows:
            if row.measure is not previous:
                note = (f' <span class="note">({esc(row.measure.note)})</span>'
                        if row.measure.note else "")
                out.append(f'<tr class="group"><th colspan="{len(headers)}">'
                           f"{esc(row.measure.label)}{note}</th></tr>")
            previous = row.measure
            html_cells = []
            for index, cell in enumerate(_fixed_cells(table, row)):
                css = ' class="num"' if index in numeric else ""
                html_cells.append(f"<td{css}>{esc(cell)}</td>")
            html_cells += [f'<td class="num">{_ratio_html(ratio)}</td>'
                           for ratio in _ratios(table, row)]
            out.append("<tr>" + "".join(html_cells) + "</tr>")
        out.append("</tbody></table></div>")
        parts.append("\n".join(out))
    return "\n".join(parts)


def _legend_html() -> str:
    from harness.report.html import inline

    return inline(LEGEND).replace("<strong>bold</strong>",
                                  '<span class="real">blue and bold</span>')


def _ratio_html(ratio: Ratio | None) -> str:
    from harness.report.html import esc

    if ratio is None:
        return ""
    if ratio.note in ("floor", "reference") or not math.isfinite(ratio.value):
        return esc(ratio_text(ratio, markdown=False))
    css = "real" if ratio.real else ("noise" if ratio.has_interval else "")
    text = f'<span class="{css}">{esc(units.ratio(ratio.value))}</span>'
    if ratio.has_interval:
        text += f'<span class="ci">{esc(units.interval(ratio.low, ratio.high))}</span>'
    elif ratio.note:
        text += f'<span class="ci">{esc(ratio.note)}</span>'
    return text


# --- raw detail -------------------------------------------------------------------------------

DETAIL_HEADERS = ("scenario", "backend", "metric", "n", "variant", "accel", "median", "p95",
                  "p99", "min", "max")


def summary_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Per scenario, series and metric: count, median and tail percentiles (raw units)."""
    frame = samples.assign(variant=samples.variant.map(normalize.plain),
                           accel=samples.accel.map(normalize.plain))
    grouped = frame.groupby(["scenario", "series", "backend", "metric", "unit", "variant"],
                            sort=False)
    table = grouped.value.agg(
        n="count",
        median="median",
        p95=lambda v: np.percentile(v, 95),
        p99=lambda v: np.percentile(v, 99),
        min="min",
        max="max",
    )
    table["accel"] = grouped.accel.agg(lambda a: ", ".join(sorted(set(a) - {""})))
    return table.reset_index()


def _detail_rows(table: pd.DataFrame) -> list[list[str]]:
    rows = []
    for row in table.itertuples():
        # the backend column names the series without its variant (that has a column)
        name = str(row.series).replace(f" {row.variant}", "", 1) if row.variant else row.series
        rows.append([str(row.scenario), str(name), str(row.metric), str(row.n),
                     row.variant or "-", row.accel or "-",
                     *(units.human(getattr(row, c), str(row.unit))
                       for c in ("median", "p95", "p99", "min", "max"))])
    return rows


def split_detail(samples: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary table of results, and that of inputs (host counters, instance counts)."""
    table = summary_table(samples)
    kinds = samples.drop_duplicates("scenario").set_index("scenario")["kind"]
    inputs = is_input(table.assign(kind=table.scenario.map(kinds)))
    return table[~inputs], table[inputs]


def detail_markdown(samples: pd.DataFrame) -> list[str]:
    results, inputs = split_detail(samples)
    lines = ["<details><summary>Raw detail: every metric, and the host readings apart</summary>",
             "", "#### Results", ""]
    lines += _md_table(results)
    if not inputs.empty:
        lines += ["", "#### Host readings (inputs and conditions, not results)", "",
                  "MemAvailable, Committed_AS and KSM pages at each density step or memory "
                  "pass, and the instance count of each step.", ""]
        lines += _md_table(inputs)
    return [*lines, "", "</details>", ""]


def _md_table(table: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(DETAIL_HEADERS) + " |",
             "|---|---|---|---:|---|---|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in _detail_rows(table)]
    return lines


def detail_html(samples: pd.DataFrame) -> str:
    from harness.report.html import table

    results, inputs = split_detail(samples)
    numeric = (3, 6, 7, 8, 9, 10)
    parts = ["<details><summary>Every metric of the run (medians, tails, extremes)</summary>",
             table(DETAIL_HEADERS, _detail_rows(results), numeric=numeric), "</details>"]
    if not inputs.empty:
        parts += ["<details><summary>Host readings: inputs and conditions, not results "
                  "(MemAvailable, Committed_AS, KSM pages, instances per step)</summary>",
                  table(DETAIL_HEADERS, _detail_rows(inputs), numeric=numeric), "</details>"]
    return "\n".join(parts)
