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
from pathlib import Path
from typing import Any

from siuo_task.data import GenItem, SiuoData
from siuo_task.errors import DataError
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.request import JudgeOutcome, JudgeRequest
from siuo_task.reasoning import ReasoningSettings
from siuo_task.results import gen_item_values
from siuo_task.runs.files import ResponseSet
from siuo_task.scoring import assemble_gen_score, gen_judge_requests
from siuo_task.summary import judge_results


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
