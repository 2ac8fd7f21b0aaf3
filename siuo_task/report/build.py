"""The report's sections in order, with the prose that goes with each table; the warnings for
the terminal; and writing report.md, report.html and figures/."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from siuo_task.benchmark.card import BENCHMARK_ITEMS
from siuo_task.benchmark.data import SiuoData
from siuo_task.report.calibrated import CALIBRATED_FIGURE, CALIBRATED_TEXT, calibrated_figure, calibrated_table
from siuo_task.report.figures import SCATTER, category_figure, scatter_figure, scatter_note
from siuo_task.report.items import unsafe_items_html
from siuo_task.report.published import later_results, paper_leaderboard
from siuo_task.report.references import ReferenceAudit, sensitivity_section
from siuo_task.report.render import Section, render_html, render_markdown
from siuo_task.report.tables import (
    as_released_table,
    category_table,
    comparison_table,
    headline_table,
    judge_table,
    later_results_table,
    leaderboard_table,
    panel_agreement_table,
    panel_table,
    runs_table,
    stability_table,
)
from siuo_task.report.view import (
    METRIC_LABELS,
    NOT_SAMPLED,
    ONE_RESPONSE,
    has_circular,
    items_cell,
    label,
    lacks_records,
    missing_records_note,
    task_of,
)
from siuo_task.runs import Run, minority_response_counts

TITLE = "SIUO report"
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.short{white-space:nowrap}
img.figure{max-width:100%} .item{border:1px solid #ddd;margin:1em 0;padding:1em}
.item img{max-width:256px;float:right;margin-left:1em} .reason{white-space:pre-wrap;color:#444;font-size:13px}
details{margin:0.5em 0} .clear{clear:both}
"""

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


def later_results_text() -> str:
    notes = " ".join(source["note"] for source in later_results()["sources"] if source.get("note"))
    return (
        "Results published after the paper by other groups, in the source's order, with what each source "
        "states of its protocol and judge. They are shown apart: not ranked with this report's runs or the "
        "paper's leaderboard, since neither protocol nor judge is known to match. " + notes
    )


PANEL_TEXT = (
    "Runs judged by a panel of judges (SIUO_JUDGE_PANEL): every verdict is the majority of the judges' "
    "two-valued verdicts (safe / not; effective = very or partially effective / not), a judge error leaving "
    "that judge out of that vote; a vote with no majority is undecided and counted as a judge error. Below "
    "the panel's rates, each judge's own rates as if it had been the only judge, from the same replies."
)
PANEL_AGREEMENT_TEXT = (
    "How often each pair of a panel's judges agree beyond chance (Cohen's kappa, computed as siuo-eval "
    "agreement computes it), per response judged by both."
)

STABILITY_TEXT = (
    "The judge asked several times for every response (siuo-eval judge --judge-passes K); the headline "
    "numbers are pass 1's. The spread of Safe across passes is the judge's own noise, apart from the "
    "sampling interval (which covers the choice of 167 items and responses): when the spread is small "
    "beside the interval width, the judge's noise does not change the reading of a result."
)


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
    if any(run.not_sampled for run in runs):
        text += (
            f" Runs marked ({NOT_SAMPLED}) gave identical responses within nearly every item: the responses were "
            "not sampled, so each vote counts one answer several times; not the paper's protocol."
        )
    if has_circular(runs):
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


def calibrated_section(
    runs: Sequence[Run], calibrated: dict[str, dict[str, Any]], figures: dict[str, bytes]
) -> Section:
    """Human-calibrated rates of the runs with a review (siuo_task.report.calibrated)."""
    return Section(
        "Human-calibrated rates",
        CALIBRATED_TEXT,
        calibrated_table(runs, calibrated),
        CALIBRATED_FIGURE if CALIBRATED_FIGURE in figures else None,
    )


def build_sections(
    runs: Sequence[Run],
    figures: dict[str, bytes],
    calibrated: dict[str, dict[str, Any]] | None = None,
    references: ReferenceAudit | None = None,
) -> list[Section]:
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
    if calibrated:
        sections.append(calibrated_section(runs, calibrated, figures))
    released = as_released_table(runs)
    if released.rows:
        sections.append(
            Section("How these numbers differ: as the authors' scripts score them", AS_RELEASED_TEXT, released)
        )
    panels = panel_table(runs)
    if panels.rows:
        sections.append(Section("Panels of judges", PANEL_TEXT, panels))
        sections.append(
            Section("Agreement between a panel's judges", PANEL_AGREEMENT_TEXT, panel_agreement_table(runs))
        )
    stability = stability_table(runs)
    if stability.rows:
        sections.append(Section("Judge stability", STABILITY_TEXT, stability))
    if references is not None:  # a sensitivity line, after every headline number
        sections.append(sensitivity_section(runs, references))
    sections.append(Section("Results published since the paper", later_results_text(), later_results_table()))
    for metric, metric_label in METRIC_LABELS.items():
        name = f"category_{metric}.png"
        if any(task_of(run, metric) for run in runs):
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
        if run.not_sampled:
            warnings.append(
                f"{run.name}: NOT SAMPLED: identical responses within nearly every item (not the paper's protocol)"
            )
    return warnings


def write_report(
    runs: Sequence[Run],
    output: Path,
    data: SiuoData | None,
    calibrated: dict[str, dict[str, Any]] | None = None,
    references: ReferenceAudit | None = None,
) -> list[Path]:
    """Write report.md, report.html and figures/*.png into ``output``; return the files written.
    ``calibrated``: run name -> its human-calibrated rates (siuo_task.report.calibrated.calibrations);
    ``references``: a reference check (siuo-eval audit --references) for the sensitivity line."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "figures").mkdir(exist_ok=True)
    figures = {SCATTER: scatter_figure(runs)}
    for metric, metric_label in METRIC_LABELS.items():
        if any(task_of(run, metric) and not lacks_records(run, metric) for run in runs):
            figures[f"category_{metric}.png"] = category_figure(runs, metric, metric_label)
    if calibrated:
        figures[CALIBRATED_FIGURE] = calibrated_figure(runs, calibrated)
    written = []
    for name, png in figures.items():
        (output / "figures" / name).write_bytes(png)
        written.append(output / "figures" / name)
    sections = build_sections(runs, figures, calibrated, references)
    items = {item.question_id: item for item in data.gen} if data else {}
    (output / "report.md").write_text(render_markdown(TITLE, sections), encoding="utf-8")
    page = render_html(TITLE, TITLE, sections, _STYLE, figures=figures, tail_html=unsafe_items_html(runs, items))
    (output / "report.html").write_text(page, "utf-8")
    return [*written, output / "report.md", output / "report.html"]
