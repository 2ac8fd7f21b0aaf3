"""``siuo-eval report``: results people can read, compare and check.

Writes report.md, a self-contained report.html (figures and item images inlined, no network
needed) and PNG figures. Every number carries its 95% interval; model pairs evaluated on the
same items get a paired difference and McNemar's exact test; the paper's leaderboard, which is
human evaluation for the open-ended metrics, stands beside the user's automatic-judge numbers.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import logging
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siuo_task.categories import KNOWN_CATEGORIES, category_slug
from siuo_task.data import GenItem, SiuoData
from siuo_task.metrics import Rate, rate
from siuo_task.resources import config_text
from siuo_task.runs import Run, TaskRun
from siuo_task.stats import mcnemar_exact_p, paired_difference

logger = logging.getLogger(__name__)

GEN_LABELS = {"safe": "Safe", "effective": "Effective", "safe_effective": "Safe & Effective"}
SIGNIFICANCE = 0.05


@dataclass(frozen=True, slots=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


def fmt_rate(percent: float | None, ci: Sequence[float] | None) -> str:
    if percent is None:
        return "—"
    return f"{percent:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else f"{percent:.1f}"


def _metric(task: TaskRun | None, name: str) -> str:
    if task is None:
        return "—"
    return fmt_rate(task.metrics.get(name), task.metrics.get(f"{name}_ci95"))


def _rates(run: Run) -> list[str]:
    return [
        _metric(run.gen, "safe_rate"),
        _metric(run.gen, "effective_rate"),
        _metric(run.gen, "safe_effective_rate"),
        _metric(run.mcq, "accuracy"),
    ]


def headline_table(runs: Sequence[Run]) -> Table:
    headers = ["Model", "Safe", "Effective", "Safe & Effective", "MCQ accuracy", "Judge", "Protocol", "Judge errors"]
    headers.append("Judge cost (USD)")
    rows = []
    for run in runs:
        gen = run.gen.metrics if run.gen else {}
        judge = f"{gen.get('judge_model') or gen.get('judge_model_requested', '—')} @ {gen.get('judge_endpoint', '—')}"
        sha = gen.get("judge_prompt_sha256")
        rows.append(
            [
                run.name,
                *_rates(run),
                f"{judge} (prompts {sha[:12]})" if sha else judge if run.gen else "—",
                f"{run.gen.task}: {gen.get('protocol', '—')}" if run.gen else "—",
                str(gen.get("judge_errors", "—")),
                "—" if gen.get("judge_cost_usd") is None else f"{gen['judge_cost_usd']:.2f}",
            ]
        )
    return Table(headers, rows)


def paper_leaderboard() -> dict[str, Any]:
    return json.loads(config_text("paper_leaderboard.json"))


def leaderboard_table(runs: Sequence[Run]) -> Table:
    board = paper_leaderboard()
    headers = ["Model", "Safe (human)", "Effective (human)", "Safe & Effective (human)", "MCQ accuracy (auto)"]
    headers.append("Source")

    def cell(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    rows = [
        [m["name"], cell(m["safe"]), cell(m["effective"]), cell(m["safe_effective"]), cell(m["mcq_accuracy"]), "paper"]
        for m in board["models"]
    ]
    rows += [[run.name, *_rates(run), "this report (automatic judge)"] for run in runs]
    return Table(headers, rows)


# -- per-category ----------------------------------------------------------------------------


def _task(run: Run, metric: str) -> TaskRun | None:
    """The part of a run a metric belongs to: MCQ for accuracy, else the open-ended task."""
    return run.mcq if metric == "accuracy" else run.gen


def _record_key(metric: str) -> str:
    """The per-item record field holding a metric's decision."""
    return "correct" if metric == "accuracy" else metric


def category_rate(run: Run, metric: str, category: str) -> Rate | None:
    """From the per-item records when logged (with an interval), else None."""
    task = _task(run, metric)
    if task is None or not task.records:
        return None
    key = _record_key(metric)
    return rate(record[key] for record in task.records.values() if record["category"] == category)


def category_table(runs: Sequence[Run], metric: str) -> Table:
    rows = []
    for category in KNOWN_CATEGORIES:
        row = [category]
        for run in runs:
            cell = category_rate(run, metric, category)
            if cell is None:
                task = _task(run, metric)
                name = "accuracy" if metric == "accuracy" else f"{metric}_rate"
                value = task.metrics.get(f"{name}_{category_slug(category)}") if task else None
                row.append(fmt_rate(value, None))
            else:
                row.append(f"{fmt_rate(cell.percent, cell.ci95)} (n={cell.n})")
        rows.append(row)
    return Table(["Category", *[run.name for run in runs]], rows)


def category_figure(runs: Sequence[Run], metric: str, label: str) -> bytes:
    """Grouped bars per category, one per model, with 95% intervals where records exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / max(len(runs), 1)
    for index, run in enumerate(runs):
        cells = [category_rate(run, metric, category) for category in KNOWN_CATEGORIES]
        values = [c.percent if c and c.percent is not None else 0.0 for c in cells]
        low = [v - c.ci95[0] if c and c.ci95 else 0.0 for v, c in zip(values, cells, strict=True)]
        high = [c.ci95[1] - v if c and c.ci95 else 0.0 for v, c in zip(values, cells, strict=True)]
        positions = [i + index * width for i in range(len(KNOWN_CATEGORIES))]
        axis.bar(positions, values, width, yerr=[low, high], capsize=2, label=run.name)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(KNOWN_CATEGORIES))])
    axis.set_xticklabels([textwrap.fill(c, 16, break_long_words=False) for c in KNOWN_CATEGORIES], fontsize=7)
    axis.set_ylim(0, 100)
    axis.set_ylabel(f"{label} (%)")
    axis.set_title(f"{label} by category (bars: 95% Wilson intervals)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


# -- paired comparisons ----------------------------------------------------------------------


def _decisions(run: Run, metric: str) -> dict[int, bool]:
    task, key = _task(run, metric), _record_key(metric)
    if task is None:
        return {}
    return {qid: bool(record[key]) for qid, record in task.records.items() if record[key] is not None}


def paired_rows(first: Run, second: Run) -> list[list[str]]:
    rows = []
    for metric, label in (*GEN_LABELS.items(), ("accuracy", "MCQ accuracy")):
        a, b = _decisions(first, metric), _decisions(second, metric)
        common = sorted(a.keys() & b.keys())
        if not common:
            continue
        pairs = [(a[qid], b[qid]) for qid in common]
        diff, low, high = paired_difference(pairs)
        only_first = sum(1 for x, y in pairs if x and not y)
        only_second = sum(1 for x, y in pairs if y and not x)
        p = mcnemar_exact_p(only_first, only_second)
        rows.append(
            [
                f"{first.name} vs {second.name}",
                label,
                str(len(common)),
                f"{100 * diff:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]",
                f"{only_first} / {only_second}",
                f"{p:.4f}",
                _verdict(first.name, second.name, label, diff, p),
            ]
        )
    return rows


def _verdict(first: str, second: str, label: str, diff: float, p: float) -> str:
    if p >= SIGNIFICANCE:
        return f"no significant difference (p >= {SIGNIFICANCE})"
    better, worse = (first, second) if diff > 0 else (second, first)
    return f"{better} higher on {label} than {worse}"


def comparison_table(runs: Sequence[Run]) -> Table:
    rows = [row for first, second in itertools.combinations(runs, 2) for row in paired_rows(first, second)]
    headers = ["Pair", "Metric", "Items", "Difference, points [95% CI]", "Discordant (only first / only second)"]
    return Table([*headers, "McNemar exact p", "Reading"], rows)


# -- rendering -------------------------------------------------------------------------------


def md_table(table: Table) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(esc(cell) for cell in row) + " |" for row in table.rows]
    return "\n".join(lines)


def html_table(table: Table, css_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


@dataclass
class Section:
    title: str
    text: str = ""
    table: Table | None = None
    figure: str | None = None  # file name under figures/


def build_sections(runs: Sequence[Run], figures: dict[str, bytes]) -> list[Section]:
    board = paper_leaderboard()
    sections = [
        Section(
            "Headline results",
            "Percentages with 95% Wilson intervals. With 167 items an interval is about ±7.5 points, "
            "so models closer than that are not told apart by this table alone; see the paired comparisons.",
            headline_table(runs),
        ),
        Section(
            "Beside the paper's leaderboard",
            f"The paper's Safe / Effective / Safe & Effective columns are HUMAN evaluation; MCQ accuracy is "
            f"automatic. This report's open-ended numbers come from an automatic judge, which estimates the human "
            f"labels. Source: {board['source']}. Status: {board['status']}",
            leaderboard_table(runs),
        ),
    ]
    for metric, label in (*GEN_LABELS.items(), ("accuracy", "MCQ accuracy")):
        name = f"category_{metric}.png"
        if name in figures:
            sections.append(Section(f"{label} by category", "", category_table(runs, metric), name))
    comparison = comparison_table(runs)
    if len(runs) > 1:
        text = (
            "Paired on the items both models answered: difference (first - second) with a 95% paired interval, "
            "and McNemar's exact test on the discordant items."
        )
        sections.append(Section("Paired comparisons", text, comparison if comparison.rows else None))
    return sections


def render_markdown(sections: Sequence[Section]) -> str:
    parts = ["# SIUO report\n"]
    for section in sections:
        parts.append(f"## {section.title}\n")
        if section.text:
            parts.append(section.text + "\n")
        if section.figure:
            parts.append(f"![{section.title}](figures/{section.figure})\n")
        if section.table:
            parts.append(md_table(section.table) + "\n")
    return "\n".join(parts)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} img.figure{max-width:100%} .item{border:1px solid #ddd;margin:1em 0;padding:1em}
.item img{max-width:256px;float:right;margin-left:1em} .reason{white-space:pre-wrap;color:#444;font-size:13px}
details{margin:0.5em 0} .clear{clear:both}
"""


def render_html(sections: Sequence[Section], figures: dict[str, bytes], items_html: str) -> str:
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>SIUO report</title><style>{_STYLE}</style>"]
    parts.append("</head><body><h1>SIUO report</h1>")
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        if section.figure:
            data = base64.b64encode(figures[section.figure]).decode("ascii")
            parts.append(f'<img class="figure" alt="{html.escape(section.title)}" src="data:image/png;base64,{data}">')
        if section.table:
            parts.append(html_table(section.table, css_class=section.title.lower().replace(" ", "-")))
    parts.append(items_html)
    parts.append("</body></html>")
    return "".join(parts)


# -- unsafe items ----------------------------------------------------------------------------


def _thumbnail(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as source:
            image = source.convert("RGB")
        image.thumbnail((256, 256))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _response_html(response: dict[str, Any]) -> str:
    safety = response.get("safety_judge") or {}
    verdict = {True: "safe", False: "UNSAFE", None: "no verdict"}[response.get("safe")]
    reason = safety.get("raw_text") or safety.get("error") or "(empty response: safe without a judge call)"
    return (
        f"<details><summary>Response ({verdict})</summary><div class='reason'>{html.escape(response['response'])}"
        f"</div><p><b>Judge:</b></p><div class='reason'>{html.escape(reason)}</div></details>"
    )


def unsafe_items_html(runs: Sequence[Run], items: dict[int, GenItem]) -> str:
    parts = ["<h2>Items judged unsafe</h2>"]
    thumbnail: Callable[[Path], str | None] = _thumbnail
    for run in runs:
        if run.gen is None or not run.gen.records:
            continue
        unsafe = [record for record in run.gen.records.values() if record["safe"] is False]
        parts.append(f"<h3>{html.escape(run.name)}: {len(unsafe)} item(s)</h3><div class='unsafe-items'>")
        for record in sorted(unsafe, key=lambda r: r["question_id"]):
            item = items.get(record["question_id"])
            parts.append(f"<div class='item' id='{html.escape(run.name)}-{record['question_id']}'>")
            if item is not None and (src := thumbnail(item.image_path)):
                parts.append(f'<img alt="item {record["question_id"]}" src="{src}">')
            parts.append(f"<p><b>{record['question_id']}</b> ({html.escape(record['category'])})</p>")
            if item is not None:
                parts.append(f"<p><b>Question:</b> {html.escape(item.question)}</p>")
                parts.append(f"<p><b>Safety warning:</b> {html.escape(item.safety_warning)}</p>")
            parts += [_response_html(response) for response in record["responses"]]
            parts.append("<div class='clear'></div></div>")
        parts.append("</div>")
    return "".join(parts)


def write_report(runs: Sequence[Run], output: Path, data: SiuoData | None) -> list[Path]:
    """Write report.md, report.html and figures/*.png into ``output``; return the files written."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "figures").mkdir(exist_ok=True)
    figures = {}
    for metric, label in (*GEN_LABELS.items(), ("accuracy", "MCQ accuracy")):
        if any(_task(run, metric) for run in runs):
            figures[f"category_{metric}.png"] = category_figure(runs, metric, label)
    written = []
    for name, png in figures.items():
        (output / "figures" / name).write_bytes(png)
        written.append(output / "figures" / name)
    sections = build_sections(runs, figures)
    items = {item.question_id: item for item in data.gen} if data else {}
    (output / "report.md").write_text(render_markdown(sections), encoding="utf-8")
    (output / "report.html").write_text(render_html(sections, figures, unsafe_items_html(runs, items)), "utf-8")
    return [*written, output / "report.md", output / "report.html"]
