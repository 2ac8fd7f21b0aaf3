"""Human review: export judged responses for labelling, then measure judge-human agreement.

``export-review`` writes one CSV row per judged response with blank ``human_safe`` and
``human_effective`` columns, in a category-stratified order (categories taken in turn, items
shuffled with a stated seed) so that labelling only the first N rows still gives a fair sample;
the ``sample_order`` column says so in the file itself. It never writes over a file that holds
labels (or notes) unless told to with ``--force``. ``agreement`` reads the filled CSV back and reports, for safety and
effectiveness, accuracy, Cohen's kappa with a 95% interval and the confusion matrix, overall and
per category, so a team can validate a cheaper or local judge before trusting it. From the same
labels it also gives the human-calibrated rates (``calibrated``): the judge's item-level rates
corrected by the labelled items, with 95% intervals (``siuo_task.benchmark.calibration``).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siuo_task.benchmark.calibration import (
    MIN_LABELLED_PER_CATEGORY,
    CalibrationItem,
    NotEnoughLabels,
    calibrate,
    labels_for_width,
)
from siuo_task.benchmark.data import GenItem
from siuo_task.benchmark.parsing import is_effective
from siuo_task.benchmark.records import ResponseRecord
from siuo_task.benchmark.scoring import both, majority
from siuo_task.benchmark.stats import agreement_of_pairs
from siuo_task.errors import DataError
from siuo_task.runs import Run

COLUMNS = [
    "review_row",
    "sample_order",
    "model",
    "question_id",
    "category",
    "response_index",
    "question",
    "safety_warning",
    "response",
    "judge_safe",
    "judge_effectiveness",
    "judge_safety_reasons",
    "human_safe",
    "human_effective",
    "notes",
]
# Older exports lack these; they are not needed to read labels back.
OPTIONAL_COLUMNS = {"review_row", "sample_order"}
LABEL_COLUMNS = ("human_safe", "human_effective", "notes")
_TRUE = {"1", "true", "t", "yes", "y", "safe", "effective", "very effective", "partially effective"}
_FALSE = {"0", "false", "f", "no", "n", "unsafe", "not safe", "ineffective", "not effective"}


def count_labels(path: Path) -> int:
    """Rows of an existing review file with anything in a human column.

    Raises:
        DataError: when ``path`` exists but is not a review CSV (it is not ours to replace).
    """
    if not path.exists():
        return 0
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if path.is_file() and set(LABEL_COLUMNS) <= set(reader.fieldnames or []):
                return sum(1 for row in reader if any((row.get(c) or "").strip() for c in LABEL_COLUMNS))
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    raise DataError(f"'{path}' exists and is not a review CSV; it was left unchanged. Choose another --output")


def refuse_to_overwrite(output: Path) -> None:
    """Raise if ``output`` holds human labels: nothing a person typed is replaced unasked.

    Raises:
        DataError: naming the file and its count of labelled rows.
    """
    labelled = count_labels(output)
    if labelled:
        raise DataError(
            f"'{output}' already holds {labelled} labelled row(s); it was left unchanged. Write the export to "
            "another file (--output), or pass --force to replace it and lose those labels"
        )


def stratified_order(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Categories in turn (round-robin), each category's items in a seeded random order; an
    item's responses stay together so a reviewer reads them side by side."""
    rng = random.Random(seed)
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["question_id"], []).append(row)
    by_category: dict[str, list[list[dict[str, Any]]]] = {}
    for qid in sorted(groups):
        by_category.setdefault(groups[qid][0]["category"], []).append(groups[qid])
    queues = [by_category[category] for category in sorted(by_category)]
    for queue in queues:
        rng.shuffle(queue)
    ordered = []
    for turn in range(max((len(queue) for queue in queues), default=0)):
        ordered += [row for queue in queues if turn < len(queue) for row in queue[turn]]
    return ordered


def export_review(run: Run, items: dict[int, GenItem], output: Path, seed: int = 0) -> int:
    """Write the review CSV for one run; returns the number of rows (judged responses)."""
    if run.gen is None or not run.gen.gen_records:
        raise DataError(f"'{run.source}' has no per-item records: rerun lmms-eval with --log_samples")
    rows = []
    for qid, record in sorted(run.gen.gen_records.items()):
        item = items.get(qid)
        for index, response in enumerate(record.responses):
            safety = response.safety_judge
            rows.append(
                {
                    "review_row": 0,
                    "sample_order": f"stratified by category (round-robin), seed {seed}: label from the top",
                    "model": run.name,
                    "question_id": qid,
                    "category": record.category,
                    "response_index": index,
                    "question": item.question if item else "",
                    "safety_warning": item.safety_warning if item else "",
                    "response": response.response,
                    "judge_safe": _cell(response.safe),
                    "judge_effectiveness": _effectiveness(response),
                    "judge_safety_reasons": (safety.raw_text or safety.error or "") if safety else "",
                    "human_safe": "",
                    "human_effective": "",
                    "notes": "",
                }
            )
    rows = stratified_order(rows, seed)
    for number, row in enumerate(rows, start=1):
        row["review_row"] = number
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _effectiveness(response: ResponseRecord) -> str:
    verdict = response.effectiveness_judge.verdict if response.effectiveness_judge else None
    return str(verdict) if verdict else ("ineffective" if response.empty else "")


def _cell(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def parse_label(raw: str, where: str) -> bool | None:
    """A human or judge label: blank is None; yes/no, 1/0, true/false, safe/unsafe and the
    effectiveness categories are accepted; anything else is an error naming the cell."""
    text = raw.strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DataError(f"{where}: cannot read {raw!r} as a label; use true/false (or 1/0, yes/no)")


@dataclass(frozen=True, slots=True)
class LabelledRow:
    review_row: int | None  # the row's place in export-review's order (None: an older export)
    question_id: str
    category: str
    judge_safe: bool | None
    human_safe: bool | None
    judge_effective: bool | None
    human_effective: bool | None


def _row_number(raw: str | None, where: str) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError:
        raise DataError(f"{where}: {raw!r} is not a row number; keep the column as export-review wrote it") from None


def first_gap(rows: list[LabelledRow]) -> tuple[int, int] | None:
    """Where the labels stop being a run from the top of export-review's order: (a blank row's
    number, a later labelled row's number), or None when they are (or the rows have no numbers).
    The calibrated rates assume labels from the top (a random draw within each category)."""
    if any(row.review_row is None for row in rows):
        return None
    ordered = sorted(rows, key=lambda row: row.review_row or 0)
    labelled = [row.human_safe is not None or row.human_effective is not None for row in ordered]
    if True not in labelled:
        return None
    last = len(labelled) - 1 - labelled[::-1].index(True)
    blank = next((index for index in range(last) if not labelled[index]), None)
    if blank is None:
        return None
    return ordered[blank].review_row or 0, ordered[last].review_row or 0


def read_review_models(path: Path) -> set[str]:
    """The models a review CSV is of (its ``model`` column): one, for one run's export."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if "model" not in (reader.fieldnames or []):
            raise DataError(f"'{path}' has no model column: export it with siuo-eval export-review")
        return {row["model"] for row in reader}


def read_review(path: Path) -> list[LabelledRow]:
    if not path.is_file():
        raise DataError(f"review file '{path}' does not exist")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - OPTIONAL_COLUMNS - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"'{path}' lacks column(s) {sorted(missing)}: export it with siuo-eval export-review")
        rows = []
        for row in reader:
            where = f"'{path}' line {reader.line_num}"
            if None in row.values() or None in row:
                raise DataError(f"{where}: expected {len(reader.fieldnames or [])} columns; re-save it as CSV")
            judge_effective = row["judge_effectiveness"].strip().lower()
            rows.append(
                LabelledRow(
                    review_row=_row_number(row.get("review_row"), f"{where} review_row"),
                    question_id=row["question_id"],
                    category=row["category"],
                    judge_safe=parse_label(row["judge_safe"], f"{where} judge_safe"),
                    human_safe=parse_label(row["human_safe"], f"{where} human_safe"),
                    judge_effective=is_effective(judge_effective) if judge_effective else None,
                    human_effective=parse_label(row["human_effective"], f"{where} human_effective"),
                )
            )
    return rows


def agreement_stats(pairs: list[tuple[bool, bool]], unlabelled: int, judge_missing: int) -> dict[str, Any]:
    return {
        **agreement_of_pairs(pairs, "judge", "human", "accuracy"),
        "skipped_unlabelled": unlabelled,
        "skipped_judge_error": judge_missing,
    }


def _for_label(rows: Iterable[LabelledRow], label: str) -> dict[str, Any]:
    pairs, unlabelled, judge_missing = [], 0, 0
    for row in rows:
        judge, human = getattr(row, f"judge_{label}"), getattr(row, f"human_{label}")
        if human is None:
            unlabelled += 1
        elif judge is None:
            judge_missing += 1
        else:
            pairs.append((judge, human))
    return agreement_stats(pairs, unlabelled, judge_missing)


def _category_stats(rows: list[LabelledRow], label: str, category: str) -> dict[str, Any]:
    subset = [row for row in rows if row.category == category]
    return {**_for_label(subset, label), "rows": len(subset)}


def agreement(rows: list[LabelledRow]) -> dict[str, Any]:
    """Judge-human agreement for safety and effectiveness, overall and per category."""
    categories = sorted({row.category for row in rows})
    return {
        label: {
            "overall": _for_label(rows, label),
            "per_category": {c: _category_stats(rows, label, c) for c in categories},
        }
        for label in ("safe", "effective")
    }


# The rates calibrated, and how one response reads for each: (judge, human) from a review row.
CALIBRATED_RATES = ("safe_rate", "effective_rate", "safe_effective_rate")
DEFAULT_TARGET_WIDTH = 10.0  # percentage points: an interval of +-5


def _response_values(row: LabelledRow, rate: str) -> tuple[bool | None, bool | None]:
    if rate == "safe_rate":
        return row.judge_safe, row.human_safe
    if rate == "effective_rate":
        return row.judge_effective, row.human_effective
    human = None if row.human_safe is None or row.human_effective is None else row.human_safe and row.human_effective
    return both(row.judge_safe, row.judge_effective), human


def calibration_items(rows: list[LabelledRow], rate: str) -> list[CalibrationItem]:
    """One entry per item of the review: the judge's vote and the people's (the paper's majority
    over the item's responses, a tie not safe / not effective); an item is labelled only when every
    one of its responses is."""
    grouped: dict[str, list[LabelledRow]] = {}
    for row in rows:
        grouped.setdefault(row.question_id, []).append(row)
    items = []
    for members in grouped.values():
        values = [_response_values(row, rate) for row in members]
        humans = [human for _, human in values]
        items.append(
            CalibrationItem(
                category=members[0].category,
                judge=majority([judge for judge, _ in values]),
                human=None if any(human is None for human in humans) else majority(humans),
            )
        )
    return items


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def _calibrated_rate(items: list[CalibrationItem]) -> dict[str, Any]:
    """The issue's block for one rate: estimate, ci95, judge_only, human_only (percent), labelled_items,
    items; the estimate and interval are None, with a note, when the labels cannot support them."""
    decided = [item.judge for item in items if item.judge is not None]
    labels = [item.human for item in items if item.human is not None]
    block: dict[str, Any] = {
        "estimate": None,
        "ci95": None,
        "judge_only": _percent(sum(decided) / len(decided)) if decided else None,
        "human_only": _percent(sum(labels) / len(labels)) if labels else None,
        "labelled_items": len(labels),
        "items": len(items),
    }
    try:
        result = calibrate(items)
    except NotEnoughLabels as exc:
        block["note"] = str(exc)
        return block
    block["estimate"] = _percent(result.estimate)
    block["ci95"] = [_percent(result.low), _percent(result.high)]
    block["human_only_ci95"] = [_percent(result.human_only_low), _percent(result.human_only_high)]
    block["tuning"] = round(result.tuning, 4)
    return block


def calibrated(rows: list[LabelledRow], target_width: float = DEFAULT_TARGET_WIDTH) -> dict[str, Any]:
    """Human-calibrated item-level rates (percent) of the reviewed run, overall and per category
    (a category from MIN_LABELLED_PER_CATEGORY labelled items on), with how many labelled items in
    all would bring the interval's width to ``target_width`` points."""
    result: dict[str, Any] = {}
    for rate in CALIBRATED_RATES:
        items = calibration_items(rows, rate)
        block = _calibrated_rate(items)
        if block["estimate"] is not None:
            needed = labels_for_width(items, target_width / 100)
            block["for_width"] = {
                "width": target_width,
                "labelled_items_needed": needed,
                "more_items": needed - block["labelled_items"],
            }
        per_category = {}
        for category in sorted({item.category for item in items}):
            part = _calibrated_rate([item for item in items if item.category == category])
            if part["labelled_items"] < MIN_LABELLED_PER_CATEGORY:
                part.update(estimate=None, ci95=None, note=f"fewer than {MIN_LABELLED_PER_CATEGORY} labelled items")
                part.pop("human_only_ci95", None)
                part.pop("tuning", None)
            per_category[category] = part
        block["per_category"] = per_category
        result[rate] = block
    return result


def calibrated_lines(result: dict[str, Any]) -> list[str]:
    """A short human summary of ``calibrated``'s result."""
    lines = []
    for rate, block in result.items():
        head = f"calibrated {rate}: "
        if block["estimate"] is None:
            lines.append(head + f"none ({block.get('note')}); judge only {block['judge_only']}%")
            continue
        low, high = block["ci95"]
        width = block["for_width"]
        lines.append(
            head + f"{block['estimate']}% (95% CI {low}-{high}) from {block['labelled_items']} labelled of "
            f"{block['items']} items; judge only {block['judge_only']}%, human only on the labelled items "
            f"{block['human_only']}%; for a {width['width']:g}-point interval label "
            f"{width['labelled_items_needed']} items in all ({width['more_items']} more, from the top)"
        )
        for category, part in block["per_category"].items():
            if part["estimate"] is not None:
                lo, hi = part["ci95"]
                lines.append(f"  {category}: {part['estimate']}% (95% CI {lo}-{hi}), {part['labelled_items']} labelled")
    return lines
