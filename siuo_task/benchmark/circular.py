"""Circular multiple choice: every item asked once per rotation of its options.

The CircularEval idea (MMBench, Liu et al. 2023): the four option texts shift one position per
rotation, so the gold letter moves through A, B, C and D; an item counts as correct only when
all four answers are right. A model that always answers the same letter, or one that leans on
a position, scores 0 on such an item; on the standard task it scores that letter's share of
the gold letters (SIUO's are skewed: A 51, D 47, B 35, C 34 of 167).

Rotation 0 is the item as published, so its gold letters are the standard task's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from siuo_task.benchmark.categories import KNOWN_CATEGORIES, category_slug
from siuo_task.benchmark.data import MCQ_LETTERS, McqItem
from siuo_task.benchmark.metrics import Rate, rate, rates_by_category
from siuo_task.benchmark.parsing import parse_mcq_answer
from siuo_task.benchmark.prompts import mcq_prompt
from siuo_task.benchmark.records import CircularRecord
from siuo_task.benchmark.results import RECORD_KEY
from siuo_task.errors import DataError

ROTATIONS = len(MCQ_LETTERS)
# A uniform random guesser: 1 in 4 per question, and all 4 rotations right with (1/4)^4.
RANDOM_ACCURACY = 100.0 / len(MCQ_LETTERS)
RANDOM_CIRCULAR_ACCURACY = round(100.0 * (1 / len(MCQ_LETTERS)) ** ROTATIONS, 4)
NO_LETTER = "none"
CellReducer = Callable[[list[dict[str, Any]]], Any]


@dataclass(frozen=True, slots=True)
class RotatedQuestion:
    """One item with its option texts shifted by ``rotation`` positions."""

    question_id: int
    category: str
    rotation: int
    question: str
    options: Mapping[str, str]
    gold: str

    def prompt(self) -> str:
        """The authors' MCQ template with the rotated options."""
        return mcq_prompt(self.question, self.options)


def rotate(item: McqItem, rotation: int) -> RotatedQuestion:
    """The item with option text ``k`` moved to letter ``k - rotation`` (mod 4).

    Args:
        item: a validated MCQ item (options A-D, gold among them).
        rotation: 0 (as published) to 3.
    """
    if not 0 <= rotation < ROTATIONS:
        raise ValueError(f"rotation must be 0..{ROTATIONS - 1}, got {rotation}")
    texts = [item.options[letter] for letter in MCQ_LETTERS]
    options = {letter: texts[(index + rotation) % ROTATIONS] for index, letter in enumerate(MCQ_LETTERS)}
    gold_index = (MCQ_LETTERS.index(item.correct_option) - rotation) % ROTATIONS
    return RotatedQuestion(item.question_id, item.category, rotation, item.question, options, MCQ_LETTERS[gold_index])


def rotations(item: McqItem) -> list[RotatedQuestion]:
    """The item's four rotations, rotation 0 first."""
    return [rotate(item, rotation) for rotation in range(ROTATIONS)]


@dataclass(frozen=True, slots=True)
class RotationAnswer:
    """One answer to one rotation: the parsed letter (None if unparseable) and the gold."""

    question_id: int
    category: str
    rotation: int
    response: str
    parsed: str | None
    gold: str

    @property
    def correct(self) -> bool:
        return self.parsed == self.gold

    def to_dict(self) -> dict[str, Any]:
        return {
            "question_id": self.question_id,
            "category": self.category,
            "rotation": self.rotation,
            "response": self.response,
            "parsed": self.parsed,
            "gold": self.gold,
            "correct": self.correct,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RotationAnswer:
        return cls(
            int(record["question_id"]),
            str(record["category"]),
            int(record["rotation"]),
            str(record["response"]),
            record["parsed"],
            str(record["gold"]),
        )


def answer_rotation(question: RotatedQuestion, response: str) -> RotationAnswer:
    """Parse the letter against the rotated options (an option's text maps to its new letter)."""
    parsed = parse_mcq_answer(response, question.options)
    return RotationAnswer(question.question_id, question.category, question.rotation, response, parsed, question.gold)


def circular_record(answers: Sequence[RotationAnswer]) -> CircularRecord:
    """One item's four answers, rotation 0 first, as its record: correct only when every
    rotation was answered right."""
    return CircularRecord(
        question_id=answers[0].question_id,
        category=answers[0].category,
        responses=tuple(answer.response for answer in answers),
        parsed=tuple(answer.parsed for answer in answers),
        golds=tuple(answer.gold for answer in answers),
        correct_per_rotation=tuple(answer.correct for answer in answers),
        correct=all(answer.correct for answer in answers),
    )


def group_items(answers: Iterable[RotationAnswer]) -> tuple[list[CircularRecord], list[int]]:
    """Gather answers by item, in first-seen item order.

    Returns:
        (records of items with all four rotations, ids of items missing a rotation). An item
        answered twice for the same rotation is an error, not a vote.
    """
    by_item: dict[int, dict[int, RotationAnswer]] = {}
    for answer in answers:
        seen = by_item.setdefault(answer.question_id, {})
        if answer.rotation in seen:
            raise DataError(f"item {answer.question_id}: rotation {answer.rotation} answered twice")
        seen[answer.rotation] = answer
    complete, incomplete = [], []
    for question_id, seen in by_item.items():
        if len(seen) < ROTATIONS:
            incomplete.append(question_id)
            continue
        complete.append(circular_record([seen[rotation] for rotation in range(ROTATIONS)]))
    return complete, incomplete


def letter_distribution(letters: Iterable[str | None]) -> dict[str, float]:
    """Percent of answers per letter A-D, and "none" for unparseable ones (0 when no answers)."""
    counts = Counter(NO_LETTER if letter is None else letter for letter in letters)
    total = sum(counts.values())
    return {key: round(100.0 * counts[key] / total, 4) if total else 0.0 for key in (*MCQ_LETTERS, NO_LETTER)}


def constant_letter_baselines(golds: Sequence[str]) -> dict[str, float]:
    """Standard-MCQ accuracy (percent) of a model that always answers the same letter.

    On the circular task each of these scores 0: every item has one rotation per gold letter.

    Args:
        golds: the gold letters of the items as published (rotation 0).
    """
    if not golds:
        return {letter: 0.0 for letter in MCQ_LETTERS}
    return {letter: round(100.0 * sum(g == letter for g in golds) / len(golds), 4) for letter in MCQ_LETTERS}


@dataclass(frozen=True, slots=True)
class CircularSummary:
    """Everything the circular task reports."""

    accuracy: Rate
    by_category: dict[str, Rate]
    chosen_letters: dict[str, float]
    gold_letters: dict[str, float]
    published_gold_letters: dict[str, float]
    always_letter_accuracy: dict[str, float]
    unparsed_rate: float
    incomplete_items: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "circular_accuracy": self.accuracy.percent,
            "circular_accuracy_ci95": list(self.accuracy.ci95) if self.accuracy.ci95 else None,
            "n_items": self.accuracy.n,
            "circular_accuracy_by_category": {cat: r.to_dict() for cat, r in self.by_category.items()},
            "chosen_letters_percent": self.chosen_letters,
            "gold_letters_percent": self.gold_letters,
            "published_gold_letters_percent": self.published_gold_letters,
            "baselines": {
                **{
                    f"always_{letter}": {"accuracy": acc, "circular_accuracy": 0.0}
                    for letter, acc in self.always_letter_accuracy.items()
                },
                "random": {"accuracy": RANDOM_ACCURACY, "circular_accuracy": RANDOM_CIRCULAR_ACCURACY},
            },
            "unparsed_rate": self.unparsed_rate,
            "incomplete_items": self.incomplete_items,
        }


def summarise(answers: Iterable[RotationAnswer]) -> CircularSummary:
    """Circular accuracy (with 95% Wilson CI) overall and per category, letter use and baselines.

    Items missing a rotation are left out of every figure and listed in ``incomplete_items``.

    Args:
        answers: one per (item, rotation), in any order.
    """
    records, incomplete = group_items(answers)
    chosen = letter_distribution(letter for record in records for letter in record.parsed)
    return CircularSummary(
        accuracy=rate(record.correct for record in records),
        by_category=rates_by_category([(record.category, record.correct) for record in records]),
        chosen_letters=chosen,
        gold_letters=letter_distribution(gold for record in records for gold in record.golds),
        published_gold_letters=letter_distribution(record.golds[0] for record in records),
        always_letter_accuracy=constant_letter_baselines([record.golds[0] for record in records]),
        unparsed_rate=chosen[NO_LETTER],
        incomplete_items=incomplete,
    )


# -- per-document values and their reductions (lmms-eval) -------------------------------------
#
# lmms-eval asks each rotation as its own document, so process_results sees one answer. Every
# document returns its answer as a cell under each metric name; each reduction groups the cells
# by item (on rank 0, after the gather, so rotations split across ranks meet again).


def rotation_values(answer: RotationAnswer) -> dict[str, Any]:
    """What one answered rotation contributes to the siuo_mcq_circular metrics, plus its record.

    The headline comes before its ``_stderr`` companion: lmms-eval writes "N/A" as the stderr
    of a custom aggregation and the companion's own value then takes that key (see README).
    """
    cell = answer.to_dict()
    slug = category_slug(answer.category)
    values = {name: cell for name in CIRCULAR_REDUCERS if name not in _PER_CATEGORY}
    values[f"{CIRCULAR_ACCURACY}_{slug}"] = cell
    values[RECORD_KEY] = cell
    return values


def _summary(cells: list[dict[str, Any]]) -> CircularSummary:
    return summarise(RotationAnswer.from_dict(cell) for cell in cells)


def circular_percent(cells: list[dict[str, Any]]) -> float | None:
    """Percent of complete items whose four rotations were all answered right."""
    return _summary(cells).accuracy.percent


def circular_stderr(cells: list[dict[str, Any]]) -> float | None:
    """Standard error of that percentage over items (ddof=1, as lmms-eval's mean_stderr)."""
    accuracy = _summary(cells).accuracy
    if accuracy.percent is None or accuracy.n < 2:
        return None
    share = accuracy.percent / 100.0
    return round(100.0 * math.sqrt(share * (1 - share) / (accuracy.n - 1)), 4)


def circular_ci95_low(cells: list[dict[str, Any]]) -> float | None:
    """Lower end of the 95% Wilson interval of circular accuracy."""
    interval = _summary(cells).accuracy.ci95
    return interval[0] if interval else None


def circular_ci95_high(cells: list[dict[str, Any]]) -> float | None:
    """Upper end of the 95% Wilson interval of circular accuracy."""
    interval = _summary(cells).accuracy.ci95
    return interval[1] if interval else None


def circular_unparsed_rate(cells: list[dict[str, Any]]) -> float:
    """Percent of asked rotations whose answer gave no letter (counted wrong)."""
    return _summary(cells).unparsed_rate


def circular_incomplete_items(cells: list[dict[str, Any]]) -> int:
    """Items with fewer than four answered rotations (e.g. cut by --limit); left out of every figure."""
    return len(_summary(cells).incomplete_items)


def _per_letter(
    letter: str, name: str, doc: str, figures: Callable[[CircularSummary], Mapping[str, float]]
) -> CellReducer:
    """The reducer of one letter's entry in one of the summary's per-letter figures."""

    def reducer(cells: list[dict[str, Any]]) -> float:
        return figures(_summary(cells))[letter]

    reducer.__name__, reducer.__doc__ = name.format(letter=letter), doc.format(letter=letter)
    return reducer


def _chosen(letter: str) -> CellReducer:
    doc = "Percent of asked rotations answered {letter} (the gold is each letter 25% of the time)."
    return _per_letter(letter, "chosen_{letter}_rate", doc, lambda summary: summary.chosen_letters)


def _always(letter: str) -> CellReducer:
    doc = "Standard-MCQ accuracy of always answering {letter} on these items (circular: 0)."
    return _per_letter(letter, "always_{letter}_accuracy", doc, lambda summary: summary.always_letter_accuracy)


# Module-level names, so the task YAML can point at each one with !function.
chosen_A_rate, chosen_B_rate, chosen_C_rate, chosen_D_rate = (_chosen(letter) for letter in MCQ_LETTERS)
always_A_accuracy, always_B_accuracy, always_C_accuracy, always_D_accuracy = (_always(x) for x in MCQ_LETTERS)

CIRCULAR_ACCURACY = "circular_accuracy"
_PER_CATEGORY = tuple(f"{CIRCULAR_ACCURACY}_{category_slug(category)}" for category in KNOWN_CATEGORIES)
CIRCULAR_REDUCERS: dict[str, CellReducer] = {
    CIRCULAR_ACCURACY: circular_percent,
    f"{CIRCULAR_ACCURACY}_stderr": circular_stderr,
    f"{CIRCULAR_ACCURACY}_ci95_low": circular_ci95_low,
    f"{CIRCULAR_ACCURACY}_ci95_high": circular_ci95_high,
    **dict.fromkeys(_PER_CATEGORY, circular_percent),
    "unparsed_rate": circular_unparsed_rate,
    "incomplete_items": circular_incomplete_items,
    **{reducer.__name__: reducer for reducer in (chosen_A_rate, chosen_B_rate, chosen_C_rate, chosen_D_rate)},
    **{reducer.__name__: reducer for reducer in (always_A_accuracy, always_B_accuracy, always_C_accuracy)},
    always_D_accuracy.__name__: always_D_accuracy,
}
CIRCULAR_LOWER_IS_BETTER = frozenset({"unparsed_rate", "incomplete_items", f"{CIRCULAR_ACCURACY}_stderr"})
# Descriptions of the model's letter use and of the data, neither better high nor low.
CIRCULAR_DESCRIPTIVE = frozenset(name for name in CIRCULAR_REDUCERS if name.startswith(("chosen_", "always_")))


def item_records(cells: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per-item records (``CircularRecord.to_dict``) from per-rotation cells, by item id;
    items missing a rotation are left out, as from every figure."""
    records, _ = group_items(RotationAnswer.from_dict(cell) for cell in cells)
    return {record.question_id: record.to_dict() for record in records}
