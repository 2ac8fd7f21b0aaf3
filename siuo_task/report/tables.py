"""Every table of the report, each cell formatted here from the runs, the published figures,
the per-category rates and the paired comparisons."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from siuo_task.benchmark.categories import KNOWN_CATEGORIES
from siuo_task.benchmark.panel_vote import panel_of_records
from siuo_task.judge.pricing import unknown_cost
from siuo_task.report.categories import category_rate
from siuo_task.report.paired import SIGNIFICANCE, Paired, compare
from siuo_task.report.published import later_results, paper_leaderboard
from siuo_task.report.render import Table, fmt_p, fmt_rate
from siuo_task.report.view import GEN_LABELS, METRIC_LABELS, has_circular, items_cell, label, lacks_records
from siuo_task.runs import JudgeInfo, Run, TaskRun, judge_info

AS_RELEASED = "_as_released"


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


def _responses_cell(run: Run) -> str:
    return "—" if run.responses_per_item is None else str(run.responses_per_item)


def _unparsed(run: Run) -> str:
    value = run.mcq.metrics.get("unparsed_rate") if run.mcq else None
    return "—" if value is None else f"{value:.1f}%"


def _plain(value: Any) -> str:
    return "—" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.2f}"


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
    circular = has_circular(runs)
    headers = ["Model", "Items", "Responses/item", "Safe", "Effective", "Safe & Effective", "MCQ accuracy"]
    headers += ["MCQ circular accuracy"] if circular else []
    rows = [[label(run), items_cell(run), _responses_cell(run), *_rates(run, circular), _unparsed(run)] for run in runs]
    return Table([*headers, "MCQ unparsed"], rows)


def fmt_cost(info: JudgeInfo) -> str:
    if info.cost_usd is None:
        endpoint = info.endpoint if info.endpoint != "unknown" and "," not in info.endpoint else None
        return unknown_cost(info.model, endpoint)
    return _usd(info.cost_usd)


def _usd(cost: float) -> str:
    return f"{cost:.2f}" if cost >= 0.01 else f"{cost:.4f}"


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


def _panels(runs: Sequence[Run]) -> list[tuple[Run, dict[str, Any]]]:
    found = []
    for run in runs:
        panel = panel_of_records(run.gen.gen_records.values()) if run.gen else None
        if panel is not None:
            found.append((run, panel))
    return found


def panel_table(runs: Sequence[Run]) -> Table:
    """Runs judged by a panel (SIUO_JUDGE_PANEL): the panel's rates, then each judge's alone."""
    headers = ["Model", "Judge", "Safe", "Effective", "Safe & Effective", "Judge errors", "Judge cost (USD)"]
    rows = []
    for run, panel in _panels(runs):
        undecided = panel["undecided_votes"]
        votes = f"undecided votes: {undecided['safety']} safety, {undecided['effectiveness']} effectiveness"
        metrics = run.gen.metrics if run.gen else {}
        # The panel's judge errors are its votes with no majority (a failed judge is left out
        # of a vote); its cost is every judge's.
        costs = [judge.get("cost_usd") for judge in panel["judges"]]
        cost = "unknown (a judge's price is unknown: see its row)" if None in costs else _usd(sum(costs))
        errors = str(metrics.get("judge_errors", 0))
        rows.append([label(run), f"the panel's majority ({votes})", *_rates(run)[:3], errors, cost])
        for judge in panel["judges"]:
            rates = [fmt_rate(judge.get(f"{m}_rate"), judge.get(f"{m}_rate_ci95")) for m in GEN_LABELS]
            cost = judge.get("cost_usd")
            rows.append(
                [
                    label(run),
                    judge["judge"],
                    *rates,
                    str(judge["judge_errors"]),
                    unknown_cost(judge["model"], judge["endpoint"]) if cost is None else _usd(cost),
                ]
            )
    return Table(headers, rows)


def panel_agreement_table(runs: Sequence[Run]) -> Table:
    """Each pair of a panel's judges: Cohen's kappa per verdict kind, on the responses both judged."""
    headers = ["Model", "Judge A", "Judge B", "Safety kappa (95% CI, n)", "Effectiveness kappa (95% CI, n)"]
    rows = []
    for run, panel in _panels(runs):
        for pair in panel["agreement"]:
            cells = []
            for kind in ("safety", "effectiveness"):
                stats = pair[kind]
                interval = stats.get("kappa_ci95") or ["—", "—"]
                cells.append(
                    f"{_plain(stats.get('kappa'))} ({_plain(interval[0])} to {_plain(interval[1])}, n={stats['n']})"
                )
            rows.append([label(run), pair["a"], pair["b"], *cells])
    return Table(headers, rows)


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


def later_results_table() -> Table:
    headers = ["Model", "SIUO (%)", "Source", "Metric as the source states it", "Protocol stated", "Judge stated"]
    headers += ["Judge: what is known, and where"]
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
                    source.get("judge_known") or "nothing beyond the source",
                ]
            )
    return Table(headers, rows)


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


def category_table(runs: Sequence[Run], metric: str) -> Table:
    """Runs with per-item records: rate, interval and n; without them: no cell (see the note)."""
    with_records = [run for run in runs if not lacks_records(run, metric)]
    rows = []
    for category in KNOWN_CATEGORIES:
        row = [category]
        for run in with_records:
            cell = category_rate(run, metric, category)
            row.append("—" if cell is None else f"{fmt_rate(cell.percent, cell.ci95)} (n={cell.n})")
        rows.append(row)
    return Table(["Category", *[label(run) for run in with_records]], rows)


def _paired_row(paired: Paired) -> list[str]:
    first, second, metric_label = paired.first, paired.second, METRIC_LABELS[paired.metric]
    caveat = (
        f"PROTOCOLS DIFFER ({first.responses_per_item} vs {second.responses_per_item} responses per item): "
        "not a like-for-like comparison; "
        if paired.protocols_differ
        else ""
    )
    if not paired.discordant:
        interval, p, reading = "no discordant items", "— (no discordant items)", "same decision on every shared item"
    else:
        interval = f"{100 * paired.difference:+.1f} [{100 * paired.low:+.1f}, {100 * paired.high:+.1f}]"
        p = fmt_p(paired.p)
        reading = _reading(paired, metric_label)
    return [
        f"{label(first)} vs {label(second)}",
        metric_label,
        str(paired.items),
        interval,
        f"{paired.only_first} / {paired.only_second}",
        p,
        caveat + reading,
    ]


def _reading(paired: Paired, metric_label: str) -> str:
    if not paired.significant:
        return f"no significant difference (p >= {SIGNIFICANCE})"
    first, second = paired.first.name, paired.second.name
    better, worse = (first, second) if paired.difference > 0 else (second, first)
    return f"{better} higher on {metric_label} than {worse}"


def comparison_table(runs: Sequence[Run]) -> Table:
    pairs = itertools.combinations(runs, 2)
    rows = [_paired_row(paired) for first, second in pairs for paired in compare(first, second)]
    headers = ["Pair", "Metric", "Items", "Difference, points [95% CI]", "Discordant (only first / only second)"]
    return Table([*headers, "McNemar exact p", "Reading"], rows)
