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

from siuo_task.card import BENCHMARK_ITEMS
from siuo_task.categories import KNOWN_CATEGORIES
from siuo_task.data import GenItem, SiuoData
from siuo_task.metrics import Rate, rate
from siuo_task.resources import config_text
from siuo_task.runs import JudgeInfo, Run, TaskRun, judge_info, minority_response_counts
from siuo_task.stats import mcnemar_exact_p, paired_difference

logger = logging.getLogger(__name__)

GEN_LABELS = {"safe": "Safe", "effective": "Effective", "safe_effective": "Safe & Effective"}
MCQ_LABELS = {"accuracy": "MCQ accuracy", "circular_accuracy": "MCQ circular accuracy"}
ONE_RESPONSE = "1 response/item"
SIGNIFICANCE = 0.05
SCATTER = "safe_vs_effective.png"


@dataclass(frozen=True, slots=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


def fmt_rate(percent: float | None, ci: Sequence[float] | None) -> str:
    if percent is None:
        return "—"
    return f"{percent:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else f"{percent:.1f}"


def fmt_p(p: float) -> str:
    return "< 0.0001" if p < 0.0001 else f"{p:.4f}"


def label(run: Run) -> str:
    """A run's name as every table and figure shows it: a one-response run and a partial run
    say so, so neither passes for the paper's 3-response protocol on all items."""
    shown = f"{run.name} ({ONE_RESPONSE})" if run.one_response else run.name
    if not run.partial:
        return shown
    return f"{shown} (PARTIAL: {items_cell(run)} of {BENCHMARK_ITEMS} items)"


def items_cell(run: Run) -> str:
    counts = {task.task: task.item_count for task in run.tasks()}
    shown = {str(count) if count is not None else "unknown" for count in counts.values()}
    if len(shown) == 1:
        return shown.pop()
    return ", ".join(f"{task} {count if count is not None else 'unknown'}" for task, count in counts.items())


def _metric(task: TaskRun | None, name: str) -> str:
    if task is None:
        return "—"
    return fmt_rate(task.metrics.get(name), task.metrics.get(f"{name}_ci95"))


def _rates(run: Run, circular: bool = False) -> list[str]:
    rates = [
        _metric(run.gen, "safe_rate"),
        _metric(run.gen, "effective_rate"),
        _metric(run.gen, "safe_effective_rate"),
        _metric(run.mcq, "accuracy"),
    ]
    return [*rates, _metric(run.circular, "circular_accuracy")] if circular else rates


def _has_circular(runs: Sequence[Run]) -> bool:
    return any(run.circular is not None for run in runs)


def _responses_cell(run: Run) -> str:
    return "—" if run.responses_per_item is None else str(run.responses_per_item)


def _unparsed(run: Run) -> str:
    value = run.mcq.metrics.get("unparsed_rate") if run.mcq else None
    return "—" if value is None else f"{value:.1f}%"


def runs_table(runs: Sequence[Run]) -> Table:
    headers = ["Run", "Harness", "Model (harness metadata)", "Items", "Results file", "Per-item records"]
    rows = []
    for run in runs:
        samples = [
            str(t.samples_file) if t.records else f"none ({t.task}: no samples at {t.samples_file})"
            for t in run.tasks()
        ]
        model = run.model_detail or run.model
        rows.append([label(run), run.harness, model, items_cell(run), str(run.source), "; ".join(samples)])
    return Table(headers, rows)


def headline_table(runs: Sequence[Run]) -> Table:
    circular = _has_circular(runs)
    headers = ["Model", "Items", "Responses/item", "Safe", "Effective", "Safe & Effective", "MCQ accuracy"]
    headers += ["MCQ circular accuracy"] if circular else []
    rows = [[label(run), items_cell(run), _responses_cell(run), *_rates(run, circular), _unparsed(run)] for run in runs]
    return Table([*headers, "MCQ unparsed"], rows)


def fmt_cost(info: JudgeInfo) -> str:
    if info.cost_usd is None:
        return f"unknown (no price for {info.model})"
    return f"{info.cost_usd:.2f}" if info.cost_usd >= 0.01 else f"{info.cost_usd:.4f}"


def judge_table(runs: Sequence[Run]) -> Table:
    headers = ["Model", "Items", "Judge (model returned)", "Endpoint", "Prompts (sha256)", "Protocol", "Judge errors"]
    rows = []
    for run in runs:
        info = judge_info(run)
        if info is None:
            continue
        sha = info.prompt_sha256[:12] or "unknown"
        items = str(run.gen.item_count) if run.gen and run.gen.item_count is not None else "unknown"
        rows.append(
            [label(run), items, info.model, info.endpoint, sha, info.protocol, str(info.errors), fmt_cost(info)]
        )
    return Table([*headers, "Judge cost (USD)"], rows)


def paper_leaderboard() -> dict[str, Any]:
    return json.loads(config_text("paper_leaderboard.json"))


def _paper_cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def leaderboard_table(runs: Sequence[Run]) -> Table:
    board = paper_leaderboard()
    headers = ["Model", "Size", "Date", "Items", "Safe (human)", "Effective (human)", "Safe & Effective (human)"]
    headers += ["MCQ accuracy (auto)", "Source"]
    rows = [
        [
            m["name"],
            m.get("size") or "—",
            m.get("date") or "—",
            str(board["items"]),
            *(_paper_cell(m[key]) for key in ("safe", "effective", "safe_effective", "mcq_accuracy")),
            "paper",
        ]
        for m in board["models"]
    ]
    for run in runs:
        info = judge_info(run)
        source = f"this report (automatic judge: {info.model})" if info else "this report (automatic)"
        if run.one_response:
            source += "; ONE response per item, not the paper's 3-response majority vote"
        if run.partial:
            source += f"; PARTIAL run, not comparable with the paper's {board['items']}-item figures"
        rows.append([label(run), "—", "—", items_cell(run), *_rates(run), source])
    return Table(headers, rows)


def scatter_figure(runs: Sequence[Run]) -> bytes:
    """Safe vs Effective, as in the paper's overview figure: the paper's models (human
    evaluation) as labelled points, this report's models highlighted with 95% interval bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = paper_leaderboard()
    figure, axis = plt.subplots(figsize=(9, 6.5))
    paper = [m for m in board["models"] if m["safe"] is not None and m["effective"] is not None]
    axis.scatter([m["safe"] for m in paper], [m["effective"] for m in paper], color="#888888", s=22, zorder=2)
    axis.set_xlim(0, 100)
    axis.set_ylim(0, 105)
    _label_points(axis, [(m["name"], m["safe"], m["effective"]) for m in paper])
    colours = plt.get_cmap("tab10")
    for index, run in enumerate(r for r in runs if r.gen is not None):
        _plot_run(axis, run, colours(index % 10))
    axis.set_xlabel("Safe (%)")
    axis.set_ylabel("Effective (%)")
    axis.set_title("Safe vs Effective: the paper's models and this report's")
    figure.text(0.01, 0.01, textwrap.fill(scatter_note(runs), 150), fontsize=7.5, ha="left", va="bottom")
    if any(run.gen is not None for run in runs):
        axis.legend(fontsize=8, loc="best")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def _label_points(axis: Any, points: list[tuple[str, float, float]], fontsize: float = 7) -> None:
    """Name every point without two names overlapping: each label takes the first nearby spot
    (right, left, above, below, then further out with a leader line) inside the axes and clear
    of the dots and of the labels already placed."""
    import matplotlib.transforms

    axis.figure.canvas.draw()
    dpi_scale = axis.figure.dpi / 72
    centres = [axis.transData.transform((x, y)) / dpi_scale for _, x, y in points]
    placed = [(cx - 3.5, cy - 3.5, cx + 3.5, cy + 3.5) for cx, cy in centres]  # the dots themselves
    frame = axis.get_window_extent().transformed(matplotlib.transforms.Affine2D().scale(1 / dpi_scale))
    height = fontsize * 1.25
    spots = [(4, 2), (4, -9), (None, 2), (None, -9)]
    spots += [(dx, dy) for step in range(1, 8) for dy in (10 * step, -10 * step - 8) for dx in (4, None)]
    for name, x, y in sorted(points, key=lambda p: (-p[2], p[1])):
        width = 0.6 * fontsize * len(name)
        px, py = axis.transData.transform((x, y)) / dpi_scale
        for dx, dy in spots:
            left = px + (dx if dx is not None else -width - 4)
            box = (left, py + dy, left + width, py + dy + height)
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        far = abs(dy) >= 10
        axis.annotate(
            name,
            (x, y),
            xytext=(box[0] - px, dy),
            textcoords="offset points",
            fontsize=fontsize,
            color="#444444",
            arrowprops={"arrowstyle": "-", "color": "#aaaaaa", "lw": 0.6} if far else None,
        )


def scatter_note(runs: Sequence[Run]) -> str:
    """What the scatter shows, stated on the figure and under it: human vs automatic."""
    board = paper_leaderboard()
    paper = [m for m in board["models"] if m["safe"] is not None and m["effective"] is not None]
    judges = sorted({info.model for run in runs if (info := judge_info(run))})
    ours = [label(run) for run in runs if run.gen is not None]
    return (
        f"Grey: the paper's {len(paper)} models, HUMAN evaluation of {board['items']} items. "
        f"Coloured, with 95% interval bars: {', '.join(ours) or 'no open-ended run in this report'}, "
        f"AUTOMATIC judge ({', '.join(judges) or 'none'}). Human and automatic labels are different "
        "measurements: part of any gap between a grey and a coloured point is the judge, not the model."
        + (
            f" Squares: {ONE_RESPONSE} with no vote, not the paper's 3-response protocol."
            if any(run.one_response for run in runs)
            else ""
        )
    )


def _plot_run(axis: Any, run: Run, colour: Any) -> None:
    assert run.gen is not None
    metrics = run.gen.metrics
    safe, effective = metrics.get("safe_rate"), metrics.get("effective_rate")
    if safe is None or effective is None:
        return
    safe_ci = metrics.get("safe_rate_ci95") or [safe, safe]
    effective_ci = metrics.get("effective_rate_ci95") or [effective, effective]
    axis.errorbar(
        safe,
        effective,
        xerr=[[safe - safe_ci[0]], [safe_ci[1] - safe]],
        yerr=[[effective - effective_ci[0]], [effective_ci[1] - effective]],
        fmt="s" if run.one_response else "o",
        markersize=9,
        mfc=colour if not run.partial else "white",
        color=colour,
        capsize=3,
        zorder=3,
        label=label(run),
    )


# -- scored two ways, judged several times, published elsewhere --------------------------------

AS_RELEASED = "_as_released"


def _plain(value: Any) -> str:
    return "—" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.2f}"


def as_released_table(runs: Sequence[Run]) -> Table:
    """Each open-ended run's numbers as this package scores them and as the authors' own scripts
    would score the same judge replies (no extra judge call)."""
    headers = ["Model"]
    for metric_label in GEN_LABELS.values():
        headers += [f"{metric_label} (this package)", f"{metric_label} (as released)"]
    rows = []
    for run in runs:
        if run.gen is None:
            continue
        row = [label(run)]
        for metric in GEN_LABELS:
            name = f"{metric}_rate"
            row += [_plain(run.gen.metrics.get(name)), _plain(run.gen.metrics.get(name + AS_RELEASED))]
        rows.append(row)
    return Table(headers, rows)


AS_RELEASED_TEXT = (
    "The same judge replies scored two ways. This package: the last labelled verdict in many real "
    "formats, judge errors left out of the vote and counted, a tie not safe, percent of decided items. "
    "As released (the authors' eval/gpt-eval.py and gen_score.py at sinwang20/SIUO@18974b65): a regex "
    "that reads only its first alternative (so a verdict in the very format the prompt asks for scores "
    "0), a reply it cannot read scores -1, the most frequent value per item wins (ties by Python's set "
    "order), and the plain mean of the item values, -1 included, so it can fall below 0. An empty "
    "response is safe in both; as released it would still be sent to the judge for effectiveness, here "
    "it is not effective with no call. Published numbers from the authors' scripts compare with the "
    "'as released' columns, not with this package's."
)


def later_results() -> dict[str, Any]:
    """SIUO results published since the paper, each with its source (configs/later_results.json)."""
    return json.loads(config_text("later_results.json"))


def later_results_table() -> Table:
    headers = ["Model", "SIUO (%)", "Source", "Metric as the source states it", "Protocol stated", "Judge stated"]
    rows = []
    for source in later_results()["sources"]:
        for result in source["results"]:
            rows.append(
                [
                    result["model"],
                    f"{result['siuo']:.1f}",
                    f"{source['title']} ({source['where']})",
                    source["metric"],
                    source["protocol_stated"] or "not stated",
                    source["judge_stated"] or "not stated",
                ]
            )
    return Table(headers, rows)


def later_results_text() -> str:
    notes = " ".join(source["note"] for source in later_results()["sources"] if source.get("note"))
    return (
        "Results published after the paper by other groups, in the source's order, with what each source "
        "states of its protocol and judge. They are shown apart: not ranked with this report's runs or the "
        "paper's leaderboard, since neither protocol nor judge is known to match. " + notes
    )


def stability_table(runs: Sequence[Run]) -> Table:
    """Runs judged several times (siuo-eval judge --judge-passes K): Safe per pass beside the
    sampling interval of pass 1."""
    headers = ["Model", "Judge passes", "Safe per pass", "Spread (points)", "Safe 95% interval width (points)"]
    headers += ["Safety verdicts that flip", "Effectiveness verdicts that flip"]
    rows = []
    for run in runs:
        metrics = run.gen.metrics if run.gen else {}
        passes = metrics.get("safe_rate_passes") or (run.judge_meta.get("safe_rate_passes") if run.gen else None)
        if not isinstance(passes, list) or len(passes) < 2:
            continue
        numbers = [value for value in passes if isinstance(value, (int, float))]
        ci = metrics.get("safe_rate_ci95")
        width = f"{ci[1] - ci[0]:.1f}" if isinstance(ci, list) and len(ci) == 2 else "—"
        spread = f"{max(numbers) - min(numbers):.1f}" if numbers else "—"
        rows.append(
            [
                label(run),
                str(len(passes)),
                ", ".join(_plain(value) for value in passes),
                spread,
                width,
                f"{_plain(metrics.get('safety_flip_rate'))}%",
                f"{_plain(metrics.get('effectiveness_flip_rate'))}%",
            ]
        )
    return Table(headers, rows)


STABILITY_TEXT = (
    "The judge asked several times for every response (siuo-eval judge --judge-passes K); the headline "
    "numbers are pass 1's. The spread of Safe across passes is the judge's own noise, apart from the "
    "sampling interval (which covers the choice of 167 items and responses): when the spread is small "
    "beside the interval width, the judge's noise does not change the reading of a result."
)


# -- per-category ----------------------------------------------------------------------------


def _task(run: Run, metric: str) -> TaskRun | None:
    """The part of a run a metric belongs to: MCQ for accuracy, circular MCQ for circular
    accuracy, else the open-ended task."""
    return {"accuracy": run.mcq, "circular_accuracy": run.circular}.get(metric, run.gen)


def _record_key(metric: str) -> str:
    """The per-item record field holding a metric's decision."""
    return "correct" if metric in MCQ_LABELS else metric


def category_rate(run: Run, metric: str, category: str) -> Rate | None:
    """From the per-item records when logged (with an interval), else None."""
    task = _task(run, metric)
    if task is None or not task.records:
        return None
    key = _record_key(metric)
    return rate(record[key] for record in task.records.values() if record["category"] == category)


def category_table(runs: Sequence[Run], metric: str) -> Table:
    """Runs with per-item records: rate, interval and n; without them: no cell (see the note)."""
    with_records = [run for run in runs if not _lacks_records(run, metric)]
    rows = []
    for category in KNOWN_CATEGORIES:
        row = [category]
        for run in with_records:
            cell = category_rate(run, metric, category)
            row.append("—" if cell is None else f"{fmt_rate(cell.percent, cell.ci95)} (n={cell.n})")
        rows.append(row)
    return Table(["Category", *[label(run) for run in with_records]], rows)


def _lacks_records(run: Run, metric: str) -> bool:
    task = _task(run, metric)
    return task is not None and not task.records


def missing_records_note(runs: Sequence[Run], metric: str | None = None) -> str:
    """Which runs have no per-item records (for ``metric``'s task, or any task) and why."""
    lacking = []
    for run in runs:
        tasks = [_task(run, metric)] if metric else run.tasks()
        for task in tasks:
            if task is not None and not task.records:
                lacking.append(f"{label(run)} ({task.task}: no per-item records at {task.samples_file})")
    if not lacking:
        return ""
    return (
        f"Left out, no per-item records: {'; '.join(lacking)}. Per-category intervals, counts and paired "
        "comparisons need them: rerun lmms-eval with --log_samples, or keep samples.jsonl beside results.json."
    )


def category_figure(runs: Sequence[Run], metric: str, metric_label: str) -> bytes:
    """Grouped bars per category, one per model, with 95% intervals where records exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(11, 4.2))
    runs = [run for run in runs if _task(run, metric) is not None and not _lacks_records(run, metric)]
    width = 0.8 / max(len(runs), 1)
    for index, run in enumerate(runs):
        cells = [category_rate(run, metric, category) for category in KNOWN_CATEGORIES]
        values = [c.percent if c and c.percent is not None else 0.0 for c in cells]
        low = [v - c.ci95[0] if c and c.ci95 else 0.0 for v, c in zip(values, cells, strict=True)]
        high = [c.ci95[1] - v if c and c.ci95 else 0.0 for v, c in zip(values, cells, strict=True)]
        positions = [i + index * width for i in range(len(KNOWN_CATEGORIES))]
        axis.bar(positions, values, width, yerr=[low, high], capsize=2, label=label(run))
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(KNOWN_CATEGORIES))])
    axis.set_xticklabels([textwrap.fill(c, 16, break_long_words=False) for c in KNOWN_CATEGORIES], fontsize=7)
    axis.set_ylim(0, 100)
    axis.set_ylabel(f"{metric_label} (%)")
    axis.set_title(f"{metric_label} by category (bars: 95% Wilson intervals)")
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
    for metric, metric_label in (*GEN_LABELS.items(), *MCQ_LABELS.items()):
        a, b = _decisions(first, metric), _decisions(second, metric)
        common = sorted(a.keys() & b.keys())
        if not common:
            continue
        pairs = [(a[qid], b[qid]) for qid in common]
        diff, low, high = paired_difference(pairs)
        only_first = sum(1 for x, y in pairs if x and not y)
        only_second = sum(1 for x, y in pairs if y and not x)
        p = mcnemar_exact_p(only_first, only_second)
        discordant = only_first + only_second
        rows.append(
            [
                f"{label(first)} vs {label(second)}",
                metric_label,
                str(len(common)),
                f"{100 * diff:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]" if discordant else "no discordant items",
                f"{only_first} / {only_second}",
                fmt_p(p) if discordant else "— (no discordant items)",
                _protocol_caveat(first, second, metric)
                + (
                    _verdict(first.name, second.name, metric_label, diff, p)
                    if discordant
                    else "same decision on every shared item"
                ),
            ]
        )
    return rows


def _protocol_caveat(first: Run, second: Run, metric: str) -> str:
    """Open-ended runs under different protocols are compared, but never as if alike."""
    if metric not in GEN_LABELS or first.responses_per_item == second.responses_per_item:
        return ""
    return (
        f"PROTOCOLS DIFFER ({first.responses_per_item} vs {second.responses_per_item} responses per item): "
        "not a like-for-like comparison; "
    )


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
    body = "".join("<tr>" + "".join(_html_cell(cell) for cell in row) + "</tr>" for row in table.rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _html_cell(text: str) -> str:
    # Short cells (rates with intervals, dates, counts) stay on one line; long ones wrap.
    css = ' class="short"' if len(text) <= 24 else ""
    return f"<td{css}>{html.escape(text)}</td>"


@dataclass
class Section:
    title: str
    text: str = ""
    table: Table | None = None
    figure: str | None = None  # file name under figures/
    caption: str = ""


def headline_text(runs: Sequence[Run]) -> str:
    """Only the sentences that hold for these runs."""
    text = "Percentages with 95% Wilson intervals."
    if any(run.mcq for run in runs):
        text += " MCQ unparsed is the share of answers with no readable letter (counted as wrong)."
    full = [run for run in runs if run.tasks() and all(t.item_count == BENCHMARK_ITEMS for t in run.tasks())]
    if full:
        text += (
            f" With {BENCHMARK_ITEMS} items an interval is about ±7.5 points, so models closer than that are "
            "not told apart by this table alone"
        )
        text += "; see the paired comparisons." if len(full) > 1 else "."
    if any(run.partial for run in runs):
        text += (
            f" Runs marked PARTIAL scored fewer than the benchmark's {BENCHMARK_ITEMS} items: their numbers "
            "cover only those items and are not comparable with full runs or the paper's."
        )
    if any(run.one_response for run in runs):
        text += (
            f" Runs marked ({ONE_RESPONSE}) judged one response per item with no vote, not the paper's "
            "majority vote over 3 sampled responses"
        )
        both = any(run.gen is not None and not run.one_response for run in runs)
        text += ": their open-ended numbers are not comparable with the 3-response runs here." if both else "."
    if _has_circular(runs):
        text += " MCQ circular accuracy counts an item only when all 4 rotations of its options are answered right."
    return text


def protocol_text(runs: Sequence[Run]) -> str:
    notes = []
    for run in runs:
        for count, items in minority_response_counts(run).items():
            notes.append(f"{label(run)}: {count} response(s) for item(s) {', '.join(map(str, items))}")
    if not notes:
        return "Who judged each run's open-ended answers, with which prompts and protocol, and at what cost."
    return (
        "Who judged each run's open-ended answers, with which prompts and protocol, and at what cost. "
        "Items with a different number of responses from the rest of their run (each item's vote is over "
        f"its own responses): {'; '.join(notes)}."
    )


def leaderboard_text(runs: Sequence[Run]) -> str:
    board = paper_leaderboard()
    text = (
        f"The paper's Safe / Effective / Safe & Effective columns are HUMAN evaluation; MCQ accuracy is automatic; "
        f"— means not published. This report's open-ended numbers come from an automatic judge, which estimates "
        f"the human labels, so the two are not the same measurement. Rows are in the paper's order, not ranked; "
        f"this report's runs follow, marked in the Source column. Source: {board['source']}."
    )
    if any(run.partial for run in runs):
        text += " PARTIAL runs scored only some items and are not comparable with the paper's rows."
    return text


def paired_section(runs: Sequence[Run]) -> Section:
    comparison = comparison_table(runs)
    text = (
        "Paired on the items both models answered: difference (first - second) with a 95% paired interval, "
        "and McNemar's exact test on the discordant items."
    )
    if note := missing_records_note(runs):
        text += " " + note
    if not comparison.rows:
        text += " No pair of runs has per-item records on shared items, so there is nothing to compare."
    return Section("Paired comparisons", text, comparison if comparison.rows else None)


def build_sections(runs: Sequence[Run], figures: dict[str, bytes]) -> list[Section]:
    sections = [
        Section(
            "Runs read", "The files each run was read from and its model as the harness recorded it.", runs_table(runs)
        ),
        Section("Headline results", headline_text(runs), headline_table(runs)),
    ]
    judges = judge_table(runs)
    if judges.rows:
        sections.append(Section("Judge and protocol", protocol_text(runs), judges))
    sections.append(
        Section(
            "Beside the paper's leaderboard",
            leaderboard_text(runs),
            leaderboard_table(runs),
            SCATTER,
            scatter_note(runs),
        )
    )
    released = as_released_table(runs)
    if released.rows:
        sections.append(
            Section("How these numbers differ: as the authors' scripts score them", AS_RELEASED_TEXT, released)
        )
    stability = stability_table(runs)
    if stability.rows:
        sections.append(Section("Judge stability", STABILITY_TEXT, stability))
    sections.append(Section("Results published since the paper", later_results_text(), later_results_table()))
    for metric, metric_label in (*GEN_LABELS.items(), *MCQ_LABELS.items()):
        name = f"category_{metric}.png"
        if any(_task(run, metric) for run in runs):
            note = missing_records_note(runs, metric)
            table = category_table(runs, metric)
            has_records = len(table.headers) > 1
            sections.append(
                Section(
                    f"{metric_label} by category",
                    note,
                    table if has_records else None,
                    name if has_records and name in figures else None,
                )
            )
    if len(runs) > 1:
        sections.append(paired_section(runs))
    return sections


def report_warnings(runs: Sequence[Run]) -> list[str]:
    """What a reader of the terminal should know before opening the report."""
    warnings = []
    if note := missing_records_note(runs):
        warnings.append(note)
    for run in runs:
        for count, items in minority_response_counts(run).items():
            warnings.append(
                f"{run.name}: {count} response(s) for item(s) {', '.join(map(str, items))}, unlike the rest"
            )
        if run.partial:
            warnings.append(f"{run.name}: PARTIAL run, {items_cell(run)} of {BENCHMARK_ITEMS} items")
    return warnings


def _figure_alt(section: Section) -> str:
    return f"Safe vs Effective scatter. {section.caption}" if section.caption else section.title


def render_markdown(sections: Sequence[Section]) -> str:
    parts = ["# SIUO report\n"]
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


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.short{white-space:nowrap}
img.figure{max-width:100%} .item{border:1px solid #ddd;margin:1em 0;padding:1em}
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
            image = f'<img class="figure" alt="{html.escape(_figure_alt(section))}" src="data:image/png;base64,{data}">'
            parts.append(image)
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


def _response_html(response: dict[str, Any], number: int, total: int) -> str:
    safety = response.get("safety_judge") or {}
    verdict = {True: "safe", False: "UNSAFE", None: "no verdict"}[response.get("safe")]
    reason = safety.get("raw_text") or safety.get("error") or "(empty response: safe without a judge call)"
    return (
        f"<details><summary>Response {number} of {total} ({verdict})</summary>"
        f"<div class='reason'>{html.escape(response['response'])}"
        f"</div><p><b>Judge:</b></p><div class='reason'>{html.escape(reason)}</div></details>"
    )


def unsafe_items_html(runs: Sequence[Run], items: dict[int, GenItem]) -> str:
    parts = ["<h2>Items judged unsafe</h2>"]
    thumbnail: Callable[[Path], str | None] = _thumbnail
    for run in runs:
        if run.gen is None or not run.gen.records:
            continue
        unsafe = [record for record in run.gen.records.values() if record["safe"] is False]
        parts.append(f"<h3>{html.escape(label(run))}: {len(unsafe)} item(s)</h3><div class='unsafe-items'>")
        for record in sorted(unsafe, key=lambda r: r["question_id"]):
            item = items.get(record["question_id"])
            parts.append(f"<div class='item' id='{html.escape(run.name)}-{record['question_id']}'>")
            if item is not None and (src := thumbnail(item.image_path)):
                parts.append(f'<img alt="item {record["question_id"]}" src="{src}">')
            parts.append(f"<p><b>{record['question_id']}</b> ({html.escape(record['category'])})</p>")
            if item is not None:
                parts.append(f"<p><b>Question:</b> {html.escape(item.question)}</p>")
                parts.append(f"<p><b>Safety warning:</b> {html.escape(item.safety_warning)}</p>")
            total = len(record["responses"])
            parts += [_response_html(r, n, total) for n, r in enumerate(record["responses"], start=1)]
            parts.append("<div class='clear'></div></div>")
        parts.append("</div>")
    return "".join(parts)


def write_report(runs: Sequence[Run], output: Path, data: SiuoData | None) -> list[Path]:
    """Write report.md, report.html and figures/*.png into ``output``; return the files written."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "figures").mkdir(exist_ok=True)
    figures = {SCATTER: scatter_figure(runs)}
    for metric, metric_label in (*GEN_LABELS.items(), *MCQ_LABELS.items()):
        if any(_task(run, metric) and not _lacks_records(run, metric) for run in runs):
            figures[f"category_{metric}.png"] = category_figure(runs, metric, metric_label)
    written = []
    for name, png in figures.items():
        (output / "figures" / name).write_bytes(png)
        written.append(output / "figures" / name)
    sections = build_sections(runs, figures)
    items = {item.question_id: item for item in data.gen} if data else {}
    (output / "report.md").write_text(render_markdown(sections), encoding="utf-8")
    (output / "report.html").write_text(render_html(sections, figures, unsafe_items_html(runs, items)), "utf-8")
    return [*written, output / "report.md", output / "report.html"]
