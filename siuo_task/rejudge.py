"""Judge responses that already exist, without generating again (``siuo-eval judge``).

The harness-free half: matching responses to items, building the judge requests, voting and
summarising. Reading each harness's files is its reader's work (``siuo_task.runs.readers``);
the helpers here turn what a reader found (a question, a per-item record) into responses.
Outputs use the same per-item values and reductions as every harness's tasks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siuo_task.data import GenItem, SiuoData
from siuo_task.errors import DataError
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.request import JudgeOutcome, JudgeRequest
from siuo_task.reasoning import ReasoningSettings
from siuo_task.results import RECORD_KEY, gen_item_values
from siuo_task.scoring import assemble_gen_score, gen_judge_requests
from siuo_task.summary import judge_results


@dataclass(frozen=True, slots=True)
class ResponseSet:
    """One item's existing responses, as read from an input file."""

    question_id: int
    responses: tuple[str, ...]


def response_set(question_id: Any, responses: Any, where: str) -> ResponseSet:
    """One item's responses as read from a file; errors name ``where`` and the item."""
    if not isinstance(question_id, int) or isinstance(question_id, bool):
        raise DataError(f"{where}: missing or non-integer 'question_id'")
    if not isinstance(responses, list) or not responses or not all(isinstance(r, str) for r in responses):
        raise DataError(f"{where} (item {question_id}): 'responses' must be a non-empty list of strings")
    return ResponseSet(question_id, tuple(responses))


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
    return [record_responses(row.get(RECORD_KEY), f"'{path}' line {number}") for number, row in numbered_lines(path)]


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


def match_items(response_sets: list[ResponseSet], data: SiuoData) -> list[tuple[GenItem, ResponseSet]]:
    """Pair each response set with its SIUO item; unknown or repeated ids are errors."""
    items = {item.question_id: item for item in data.gen}
    seen: set[int] = set()
    pairs = []
    for response_set in response_sets:
        qid = response_set.question_id
        if qid not in items:
            raise DataError(f"item {qid} in the input is not in the SIUO data under '{data.root}'")
        if qid in seen:
            raise DataError(f"item {qid} appears more than once in the input")
        seen.add(qid)
        pairs.append((items[qid], response_set))
    return pairs


def pair_requests(pairs: list[tuple[GenItem, ResponseSet]]) -> list[list[JudgeRequest]]:
    """Every judge call of every item, grouped per item (in ``gen_judge_requests`` order), with
    the reasoning-trace settings of SIUO_REASONING_TAGS / SIUO_JUDGE_TRACES."""
    reasoning = ReasoningSettings.from_env()
    return [gen_judge_requests(item, response_set.responses, reasoning) for item, response_set in pairs]


def item_values(
    pairs: list[tuple[GenItem, ResponseSet]],
    batches: list[list[JudgeRequest]],
    outcomes: list[JudgeOutcome],
    config: JudgeConfig,
    window: tuple[float, float],
) -> list[dict[str, Any]]:
    """Per-item values from the outcomes of ``pair_requests(pairs)`` (flattened, same order)."""
    reasoning = ReasoningSettings.from_env()
    values, offset = [], 0
    for (item, response_set), batch in zip(pairs, batches, strict=True):
        score = assemble_gen_score(item, response_set.responses, outcomes[offset : offset + len(batch)], reasoning)
        offset += len(batch)
        line = {"question_id": item.question_id, "filtered_resps": list(response_set.responses)}
        values.append({**line, **gen_item_values(score, config, *window)})
    return values


def judge_pairs(
    pairs: list[tuple[GenItem, ResponseSet]],
    engine: JudgeEngine,
    on_done: Callable[[JudgeOutcome], None] | None = None,
) -> list[dict[str, Any]]:
    """Judge every response of every item in one concurrent batch; return per-item values."""
    started = time.time()
    batches = pair_requests(pairs)
    outcomes = engine.grade_many([request for batch in batches for request in batch], on_done)
    return item_values(pairs, batches, outcomes, engine.config, (started, time.time()))


def rejudge(
    pairs: list[tuple[GenItem, ResponseSet]],
    config: JudgeConfig,
    source: Path,
    on_done: Callable[[JudgeOutcome], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Judge ``pairs`` with a fresh engine for ``config``; return (results summary, per-item values)."""
    engine = JudgeEngine(config)
    try:
        values = judge_pairs(pairs, engine, on_done)
    finally:
        engine.close()
    return judge_results(values, config, source), values


def write_outputs(output: Path, summary: dict[str, Any], values: list[dict[str, Any]], prefix: str = "") -> None:
    """``<prefix>results.json`` and ``<prefix>samples.jsonl`` (one line per item) in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    with open(output / f"{prefix}samples.jsonl", "w", encoding="utf-8") as handle:
        for number, value in enumerate(values):
            handle.write(json.dumps({"doc_id": number, **value}, ensure_ascii=False) + "\n")
    (output / f"{prefix}results.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), "utf-8")
