"""Reading what a run's files hold: JSON lines with their numbers, our per-item records, and
one item's responses as a reader found them (a question, a prompt, a record).

Every harness's reader (``siuo_task/adapters/<harness>/reader.py``) and ours (``runs.ours``,
``runs.harness_files``) build on these; errors name the file, the line and the item.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from siuo_task.benchmark.data import SiuoData
from siuo_task.benchmark.results import RECORD_KEY
from siuo_task.errors import DataError


@dataclass(frozen=True, slots=True)
class ResponseSet:
    """One item's existing responses, as read from an input file."""

    question_id: int
    responses: tuple[str, ...]
    # The question text the file shows beside the id, where it shows one (the authors' format),
    # so a file made from other data is caught.
    question: str | None = None


def response_set(question_id: Any, responses: Any, where: str, question: Any = None) -> ResponseSet:
    """One item's responses as read from a file; errors name ``where`` and the item."""
    if not isinstance(question_id, int) or isinstance(question_id, bool):
        raise DataError(f"{where}: missing or non-integer 'question_id'")
    if not isinstance(responses, list) or not responses or not all(isinstance(r, str) for r in responses):
        raise DataError(f"{where} (item {question_id}): 'responses' must be a non-empty list of strings")
    return ResponseSet(question_id, tuple(responses), question if isinstance(question, str) else None)


T = TypeVar("T")


def read_each(
    path: Path, entries: Iterable[T], read_one: Callable[[T], ResponseSet], shown: int = 20
) -> list[ResponseSet]:
    """Every entry's responses; a malformed file is one error listing all its problems, not its first."""
    sets: list[ResponseSet] = []
    problems: list[str] = []
    for entry in entries:
        try:
            sets.append(read_one(entry))
        except DataError as exc:
            problems.append(str(exc))
    if problems:
        more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
        listed = "\n  - ".join(problems[:shown])
        raise DataError(f"'{path}' cannot be judged ({len(problems)} problem(s)):\n  - {listed}{more}")
    return sets


def numbered_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSONL file with their line numbers; errors name the line."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"'{path}' line {number} is not JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise DataError(f"'{path}' line {number} is a {type(row).__name__}, expected an object")
        rows.append((number, row))
    return rows


def record_responses(record: Any, where: str) -> ResponseSet:
    """The responses of one item from its per-item record (``RECORD_KEY`` of a samples line)."""
    if not isinstance(record, dict) or "responses" not in record:
        raise DataError(
            f"{where} has no '{RECORD_KEY}' record with responses: pass the samples file of a siuo_gen or "
            "siuo_gen_greedy run, not siuo_mcq's"
        )
    responses = [entry.get("response") if isinstance(entry, dict) else None for entry in record["responses"]]
    return response_set(record.get("question_id"), responses, where)


def read_record_lines(path: Path) -> list[ResponseSet]:
    """Responses from a samples JSONL whose lines carry our per-item record (every harness's
    judged samples, and ``siuo-eval judge``'s samples.jsonl)."""
    return read_each(
        path, numbered_lines(path), lambda line: record_responses(line[1].get(RECORD_KEY), f"'{path}' line {line[0]}")
    )


def read_records(path: Path) -> dict[int, dict[str, Any]]:
    """The per-item records of a samples JSONL by item id ({} when the file is absent)."""
    if not path.is_file():
        return {}
    records = {}
    for _, row in numbered_lines(path):
        record = row.get(RECORD_KEY)
        if isinstance(record, dict) and "question_id" in record:
            records[record["question_id"]] = record
    return records


def flat_responses(raw: Any) -> list[Any]:
    """A harness's filtered responses (a string, or lists of strings per repeat) as one list."""
    flat: list[Any] = []
    for entry in raw if isinstance(raw, list) else [raw]:
        flat.extend(entry if isinstance(entry, list) else [entry])
    return flat


def item_for_prompt(data: SiuoData, question: str, target: str, where: str) -> int:
    """The open-ended item whose question and reference answer a generation-only sample shows
    (the prompt and target siuo_gen gives every harness), compared without surrounding space."""
    items = {(item.question.strip(), item.reference_answer.strip()): item.question_id for item in data.gen}
    key = (question.strip(), target.strip())
    if key not in items:
        raise DataError(
            f"{where}: prompt {key[0][:60]!r} is not a SIUO open-ended question; pass the samples "
            "file of a siuo_gen or siuo_gen_greedy run (siuo_mcq's needs no judge)"
        )
    return items[key]


def item_for_question(data: SiuoData, question: str, where: str) -> int:
    """The open-ended item with this question text, compared without surrounding space (5 of the
    167 published questions end in a space, which other tools' files may have dropped)."""
    by_question = {item.question.strip(): item.question_id for item in data.gen}
    if question.strip() not in by_question:
        raise DataError(f"{where}: question {question.strip()[:60]!r} is not a SIUO item")
    return by_question[question.strip()]
