"""Judging items' responses that a run already holds, and writing our own results files: what
``siuo-eval judge`` does per run and VLMEvalKit's ``evaluate`` does for its predictions.

The judge step itself is ``siuo_task.benchmark.scoring.grade``; here its outcomes become each
item's values (one line of our samples.jsonl) and the run's results.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from siuo_task.benchmark.data import GenItem, SiuoData
from siuo_task.benchmark.panel_vote import vote
from siuo_task.benchmark.reasoning import ReasoningSettings
from siuo_task.benchmark.results import gen_item_values
from siuo_task.benchmark.scoring import Graded, assemble_gen_record, grade
from siuo_task.benchmark.summary import JudgeResults, judge_results
from siuo_task.errors import DataError
from siuo_task.judge.engines import AnyEngine, AnyJudge, new_engine
from siuo_task.judge.request import JudgeOutcome
from siuo_task.runs.files import ResponseSet

OnDone = Callable[[JudgeOutcome], None]
Pairs = Sequence[tuple[GenItem, ResponseSet]]


def match_items(response_sets: list[ResponseSet], data: SiuoData) -> list[tuple[GenItem, ResponseSet]]:
    """Pair each response set with its SIUO item; every unknown or repeated id is listed in one error."""
    items = {item.question_id: item for item in data.gen}
    seen: set[int] = set()
    pairs, problems = [], []
    for response_set in response_sets:
        qid = response_set.question_id
        if qid not in items:
            problems.append(f"item {qid} in the input is not in the SIUO data under '{data.root}'")
        elif qid in seen:
            problems.append(f"item {qid} appears more than once in the input")
        else:
            seen.add(qid)
            pairs.append((items[qid], response_set))
    if problems:
        raise DataError(f"{len(problems)} problem(s) pairing the input with the data:\n  - " + "\n  - ".join(problems))
    return pairs


def item_values(pairs: Pairs, graded: Graded, config: AnyJudge, reasoning: ReasoningSettings) -> list[dict[str, Any]]:
    """Per-item values (the samples lines of our files) from the outcomes of ``pairs``, split
    with the same trace settings the requests were made with."""
    values = []
    for (item, response_set), outcomes in zip(pairs, graded.outcomes, strict=True):
        record = assemble_gen_record(item, response_set.responses, outcomes, reasoning)
        line = {"question_id": item.question_id, "filtered_resps": list(response_set.responses)}
        values.append({**line, **gen_item_values(record, config, graded.started, graded.finished)})
    return values


def judge_values(
    pairs: Pairs, engine: AnyEngine, reasoning: ReasoningSettings, on_done: OnDone | None = None
) -> list[dict[str, Any]]:
    """Judge every response of every item in one concurrent batch; return per-item values."""
    graded = grade([(item, response_set.responses) for item, response_set in pairs], engine, reasoning, on_done)
    return item_values(pairs, graded, engine.config, reasoning)


def judge_responses(
    pairs: Pairs, config: AnyJudge, source: Path, reasoning: ReasoningSettings, on_done: OnDone | None = None
) -> tuple[JudgeResults, list[dict[str, Any]]]:
    """Judge ``pairs`` with an engine of its own for ``config`` (one judge or a panel), closed
    when done; return (results.json, per-item values)."""
    engine = new_engine(config, vote)
    try:
        values = judge_values(pairs, engine, reasoning, on_done)
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
