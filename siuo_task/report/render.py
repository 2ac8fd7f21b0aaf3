"""The one renderer of ``report`` and ``audit``: tables and sections as Markdown and as
self-contained HTML, and the formats every cell of a rate or a p-value takes."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    title: str
    text: str = ""
    table: Table | None = None
    figure: str | None = None  # file name under figures/
    caption: str = ""
    css_class: str | None = None  # the HTML table's class; None: made from the title


def fmt_rate(percent: float | None, ci: Sequence[float] | None) -> str:
    if percent is None:
        return "—"
    return f"{percent:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else f"{percent:.1f}"


def fmt_p(p: float) -> str:
    return "< 0.0001" if p < 0.0001 else f"{p:.4f}"


def md_table(table: Table) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(esc(cell) for cell in row) + " |" for row in table.rows]
    return "\n".join(lines)


# Every page's tables: a cell with nowhere to break (a file path) breaks anywhere rather than
# widening its column past the page, and a table still wider than the page (many columns of
# short cells, which stay on one line) scrolls sideways in its own box, never off the page.
TABLE_STYLE = ".table-box{max-width:100%;overflow-x:auto}td{overflow-wrap:anywhere}"


def html_table(table: Table, css_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(_html_cell(cell) for cell in row) + "</tr>" for row in table.rows)
    rows = f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="table-box">{rows}</div>'


def _html_cell(text: str) -> str:
    # Short cells (rates with intervals, dates, counts) stay on one line; long ones wrap.
    css = ' class="short"' if len(text) <= 24 else ""
    return f"<td{css}>{html.escape(text)}</td>"


def _figure_alt(section: Section) -> str:
    return f"Safe vs Effective scatter. {section.caption}" if section.caption else section.title


def render_markdown(heading: str, sections: Sequence[Section], intro: str = "") -> str:
    parts = [f"# {heading}\n", *([intro + "\n"] if intro else [])]
    for section in sections:
        parts.append(f"## {section.title}\n")
        if section.text:
            parts.append(section.text + "\n")
        if section.figure:
            alt = _figure_alt(section).replace("[", "(").replace("]", ")")
            parts.append(f"![{alt}](figures/{section.figure})\n")
        if section.table:
            parts.append(md_table(section.table) + "\n")
    return "\n".join(parts)


def render_html(
    title: str,
    heading: str,
    sections: Sequence[Section],
    style: str,
    *,
    figures: Mapping[str, bytes] | None = None,
    intro_html: str = "",
    tail_html: str = "",
) -> str:
    """One HTML page, figures inlined so it opens with no network. ``intro_html`` and
    ``tail_html`` are already HTML (the caller escapes what they hold)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"]
    parts.append(f"<style>{TABLE_STYLE}{style}</style>")
    parts.append(f"</head><body><h1>{heading}</h1>{intro_html}")
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        if section.figure and figures is not None:
            data = base64.b64encode(figures[section.figure]).decode("ascii")
            image = f'<img class="figure" alt="{html.escape(_figure_alt(section))}" src="data:image/png;base64,{data}">'
            parts.append(image)
        if section.table:
            css = section.css_class if section.css_class is not None else section.title.lower().replace(" ", "-")
            parts.append(html_table(section.table, css_class=css))
    parts.append(tail_html)
    parts.append("</body></html>")
    return "".join(parts)
