"""A self-contained HTML page: inline CSS, charts as inline SVG, no script, no outside file.

Readable offline and as a CI artifact. Text goes through :func:`html.escape`; the Markdown the
report shares with ``summary.md`` (methodology, order effects) is turned into HTML by
:func:`markdown`, which knows the few constructs those sections use: headings, paragraphs,
lists, pipe tables, ``**bold**`` and ```code```.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

CSS = """
:root { --fg: #1b1f24; --muted: #59636e; --line: #d1d9e0; --band: #f6f8fa; --real: #0b5394;
        --bad: #b42318; --good: #1a7f37; --warn: #9a6700; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       color: var(--fg); margin: 0 auto; padding: 1.5em 2em 4em; max-width: 1280px; }
h1 { font-size: 1.7em; margin: 0 0 .2em; }
h2 { font-size: 1.35em; border-bottom: 1px solid var(--line); padding-bottom: .2em;
     margin-top: 2em; }
h3 { font-size: 1.1em; margin: 1.5em 0 .4em; }
h4 { font-size: 1em; margin: 1.2em 0 .3em; }
p.lede, .muted, figcaption, caption { color: var(--muted); }
nav { margin: .6em 0 1em; } nav a { margin-right: 1em; }
code { font: .9em ui-monospace, "DejaVu Sans Mono", monospace; background: var(--band);
       padding: .05em .3em; border-radius: 3px; }
pre { background: var(--band); padding: .8em; overflow: auto; font-size: .85em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .4em 0 1em; font-size: .9em; }
caption { text-align: left; padding: .2em 0 .4em; font-size: .95em; }
th, td { border: 1px solid var(--line); padding: .25em .6em; vertical-align: top; }
th { background: var(--band); text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.group th { background: #eaeef2; }
.ci { color: var(--muted); font-size: .85em; display: block; }
.real { color: var(--real); font-weight: 600; }
.noise { color: var(--muted); }
.note { color: var(--muted); font-size: .85em; }
.regression { color: var(--bad); font-weight: 600; }
.improvement { color: var(--good); font-weight: 600; }
.warn { color: var(--warn); }
figure { margin: 1em 0 2em; } figure svg { max-width: 100%; height: auto; display: block; }
figcaption { font-size: .9em; margin-top: .3em; }
details { margin: .6em 0; } summary { cursor: pointer; font-weight: 600; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15em 1em; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
.verdict { font-size: 1.2em; font-weight: 600; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def page(title: str, body: Iterable[str]) -> str:
    """A whole HTML document."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
        "",
    ])


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = (),
          caption: str = "", css_class: str = "", raw: bool = False) -> str:
    """A table; cells are escaped unless ``raw`` (they are HTML already)."""
    cell = (lambda text: text) if raw else esc
    parts = [f'<div class="scroll"><table class="{esc(css_class)}">' if css_class
             else '<div class="scroll"><table>']
    if caption:
        parts.append(f"<caption>{cell(caption)}</caption>")
    parts.append("<thead><tr>" + "".join(
        f'<th class="num">{cell(h)}</th>' if i in numeric else f"<th>{cell(h)}</th>"
        for i, h in enumerate(headers)) + "</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>" + "".join(
            f'<td class="num">{cell(c)}</td>' if i in numeric else f"<td>{cell(c)}</td>"
            for i, c in enumerate(row)) + "</tr>")
    parts.append("</tbody></table></div>")
    return "\n".join(parts)


def facts(items: Iterable[tuple[str, str]]) -> str:
    """A definition list of facts (escaped)."""
    return '<dl class="facts">' + "".join(
        f"<dt>{esc(key)}</dt><dd>{esc(value)}</dd>" for key, value in items) + "</dl>"


_XML_PROLOGUE = re.compile(r"^\s*<\?xml[^>]*\?>\s*(<!DOCTYPE[^>]*>\s*)?", re.S)
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_SVG_ID = re.compile(r'\b(id="|href="#|url\(#)([^")]+)')


def svg(path: Path, prefix: str) -> str:
    """An SVG file's ``<svg>`` element, to inline in a page: no XML prologue, and every id
    prefixed so that two charts on one page never share one."""
    text = _XML_PROLOGUE.sub("", path.read_text())
    text = _SVG_METADATA.sub("", text)  # matplotlib's RDF block: namespaces, no content
    return _SVG_ID.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", text)


def figure(svg_markup: str, caption: str, ident: str) -> str:
    return (f'<figure class="chart" id="{esc(ident)}">{svg_markup}'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


# --- the Markdown subset the report's shared sections use ----------------------------------

_INLINE = (
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
)


def inline(text: str) -> str:
    """Escape ``text``, then render ``code`` and **bold**."""
    out = esc(text).replace("\\|", "|")
    for pattern, replacement in _INLINE:
        out = pattern.sub(replacement, out)
    return out


def markdown(lines: Iterable[str], shift: int = 0) -> str:
    """Markdown lines (headings, paragraphs, ``-`` lists, pipe tables) as HTML; headings go
    ``shift`` levels deeper."""
    out: list[str] = []
    block: list[str] = []
    kind = ""

    def flush() -> None:
        nonlocal block, kind
        if kind == "list":
            out.append("<ul>" + "".join(f"<li>{inline(item)}</li>" for item in block)
                       + "</ul>")
        elif kind == "table":
            out.append(_md_table(block))
        elif kind == "para":
            out.append(f"<p>{inline(' '.join(block))}</p>")
        block, kind = [], ""

    for line in lines:
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        this = ("" if not stripped else "heading" if heading else
                "list" if stripped.startswith("- ") else
                "table" if stripped.startswith("|") else "para")
        if this != kind or this == "heading":
            flush()
        if heading:
            level = min(len(heading.group(1)) + shift, 6)
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif this:
            kind = this
            block.append(stripped[2:] if this == "list" else stripped)
    flush()
    return "\n".join(out)


def _split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [cell.strip() for cell in cells]


def _md_table(lines: list[str]) -> str:
    header, *rest = lines
    align = _split_row(rest[0]) if rest and set(rest[0]) <= set("|-: ") else None
    body = rest[1:] if align is not None else rest
    numeric = [i for i, a in enumerate(align or []) if a.endswith(":")]
    return table([inline(c) for c in _split_row(header)],
                 ([inline(c) for c in _split_row(row)] for row in body),
                 numeric=numeric, raw=True)
