"""The report's human-calibrated rates: for a run with a filled review CSV (``--review FILE``, or a
``review.csv`` beside the run), the judge's rates beside the rates corrected by the labelled items
(``siuo_task.commands.review.calibrated``), with how many items were labelled, and a figure of judge-only
against calibrated against the paper's human number for the same model, where the paper has one."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from siuo_task.errors import DataError
from siuo_task.report.figures import _legend as show_legend  # the helpers every report figure shares
from siuo_task.report.figures import _png as png
from siuo_task.report.figures import _pyplot as pyplot
from siuo_task.report.published import paper_leaderboard
from siuo_task.report.render import Table
from siuo_task.report.view import label
from siuo_task.runs import Run

CALIBRATED_FIGURE = "calibrated.png"
REVIEW_BESIDE_RUN = "review.csv"
RATES = {"safe_rate": ("safe", "Safe"), "effective_rate": ("effective", "Effective")}
RATES["safe_effective_rate"] = ("safe_effective", "Safe & Effective")

CALIBRATED_TEXT = (
    "Rates corrected by people's labels: the judge's verdicts on every item, corrected by how far they are "
    "from people's on a random sample of items people labelled (siuo-eval export-review, labelled from the "
    "top; siuo-eval agreement). The 95% interval holds whatever the judge's bias, provided the labelled items "
    "are a random draw within each category, as export-review's order makes them; it narrows as the judge "
    "agrees more with people and as more items are labelled (docs/metrics.md). Judge only: the judge's own "
    "rate. Human only: people's rate over the labelled items alone. Paper: the paper's human evaluation of "
    "the same model, where published."
)


def _review_model(path: Path) -> str:
    from siuo_task.commands.review import read_review_models

    models = read_review_models(path)
    if len(models) != 1:
        raise DataError(f"review file '{path}' holds {len(models)} models ({', '.join(sorted(models))}); expected one")
    return models.pop()


def beside(run: Run) -> Path | None:
    """A ``review.csv`` in the run's folder (or beside its results file), if there is one."""
    folder = run.source if run.source.is_dir() else run.source.parent
    candidate = folder / REVIEW_BESIDE_RUN
    return candidate if candidate.is_file() else None


def find_reviews(runs: Sequence[Run], given: Sequence[Path]) -> dict[str, Path]:
    """Run name -> its review file: each given file goes to the run its ``model`` column names (the
    only run, when one is reported); a run with none given uses a review.csv beside it (when other
    runs reported share its folder, only if the review's model column names it).

    Raises:
        DataError: a given file names no run of the report, or two files name one run.
    """
    found: dict[str, Path] = {}
    for path in given:
        if not path.is_file():
            raise DataError(f"--review '{path}' does not exist")
        model = _review_model(path)
        names = [run.name for run in runs if model in (run.name, label(run))]
        if not names and len(runs) == 1:
            names = [runs[0].name]
        if not names:
            raise DataError(
                f"--review '{path}' is a review of '{model}', which is none of the runs reported "
                f"({', '.join(run.name for run in runs)}); export the review from one of them"
            )
        if names[0] in found:
            raise DataError(f"--review '{path}' and '{found[names[0]]}' are both reviews of '{names[0]}'; give one")
        found[names[0]] = path
    for run in runs:
        if run.name in found or (nearby := beside(run)) is None:
            continue
        # A folder of several runs: its review.csv is the review of the run its model column names.
        alone = sum(1 for other in runs if beside(other) == nearby) == 1
        if alone or _review_model(nearby) in (run.name, label(run)):
            found[run.name] = nearby
    return found


def calibrations(runs: Sequence[Run], reviews: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Run name -> ``siuo_task.commands.review.calibrated``'s result for its review, with the file read."""
    from siuo_task.commands.review import calibrated, read_review

    result = {}
    for run in runs:
        if run.name in reviews:
            result[run.name] = {"review": reviews[run.name], **calibrated(read_review(reviews[run.name]))}
    return result


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def paper_model(run: Run) -> dict[str, Any] | None:
    """The paper's row for the run's model: the run's name or model (its last path part, a trailing
    -hf left out) equal to a paper model's name, ignoring case and punctuation."""
    wanted = {_key(run.name), _key(run.model.rsplit("/", 1)[-1])}
    wanted |= {key[:-2] for key in wanted if key.endswith("hf")}
    return next((m for m in paper_leaderboard()["models"] if _key(m["name"]) in wanted), None)


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def calibrated_table(runs: Sequence[Run], found: dict[str, dict[str, Any]]) -> Table:
    headers = ["Run", "Rate", "Judge only", "Calibrated (95% CI)", "Human only (labelled items)", "Labelled items"]
    headers += ["Paper (human)", "Review"]
    rows = []
    for run in runs:
        if run.name not in found:
            continue
        result, paper = found[run.name], paper_model(run)
        for rate, (paper_key, rate_label) in RATES.items():
            block = result[rate]
            estimate = "—"
            if block["estimate"] is not None:
                low, high = block["ci95"]
                estimate = f"{block['estimate']:.1f} [{low:.1f}, {high:.1f}]"
            elif block.get("note"):
                estimate = f"— ({block['note']})"
            paper_value = paper.get(paper_key) if paper else None
            rows.append(
                [
                    label(run),
                    rate_label,
                    _cell(block["judge_only"]),
                    estimate,
                    _cell(block["human_only"]),
                    f"{block['labelled_items']} of {block['items']}",
                    f"{paper_value:.2f} ({paper['name']})" if paper and paper_value is not None else "—",
                    str(result["review"]),
                ]
            )
            for category, part in block["per_category"].items():
                if part["estimate"] is not None:
                    low, high = part["ci95"]
                    rows.append(
                        [
                            label(run),
                            f"{rate_label}: {category}",
                            _cell(part["judge_only"]),
                            f"{part['estimate']:.1f} [{low:.1f}, {high:.1f}]",
                            _cell(part["human_only"]),
                            f"{part['labelled_items']} of {part['items']}",
                            "—",
                            "",
                        ]
                    )
    return Table(headers, rows)


def calibrated_figure(runs: Sequence[Run], found: dict[str, dict[str, Any]]) -> bytes:
    """Per reviewed run and rate: the judge's rate, the calibrated rate with its interval, and the
    paper's human number where published."""
    plt = pyplot()
    reviewed = [run for run in runs if run.name in found]
    figure, axes = plt.subplots(1, len(RATES), figsize=(4 * len(RATES), 0.9 * len(reviewed) + 2.2), squeeze=False)
    for axis, (rate, (paper_key, rate_label)) in zip(axes[0], RATES.items(), strict=True):
        for row, run in enumerate(reviewed):
            block, paper = found[run.name][rate], paper_model(run)
            if block["judge_only"] is not None:
                axis.scatter([block["judge_only"]], [row + 0.15], marker="x", color="#c0392b")
            if block["estimate"] is not None:
                low, high = block["ci95"]
                axis.errorbar(
                    [block["estimate"]],
                    [row],
                    xerr=[[block["estimate"] - low], [high - block["estimate"]]],
                    fmt="o",
                    color="#1f77b4",
                    capsize=3,
                )
            if paper and paper.get(paper_key) is not None:
                axis.scatter([paper[paper_key]], [row - 0.15], marker="D", color="#555555")
        axis.set_yticks(range(len(reviewed)), [label(run) for run in reviewed], fontsize=8)
        axis.set_xlim(0, 100)
        axis.set_ylim(-0.6, len(reviewed) - 0.4)
        axis.set_xlabel(f"{rate_label} (%)")
        axis.scatter([], [], marker="x", color="#c0392b", label="judge only")
        axis.errorbar([], [], xerr=[], fmt="o", color="#1f77b4", capsize=3, label="calibrated, 95% CI")
        axis.scatter([], [], marker="D", color="#555555", label="paper (human)")
    show_legend(axes[0][0])
    figure.suptitle("Judge only vs human-calibrated vs the paper's human evaluation", fontsize=10)
    figure.tight_layout()
    return png(plt, figure)
