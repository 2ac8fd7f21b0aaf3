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
from siuo_task.judge.engine import JudgeEngine, JudgeOutcome, JudgeRequest
from siuo_task.judge.pricing import price_table
from siuo_task.prompts import PROMPT_VERSION, prompt_templates_sha256
from siuo_task.reasoning import ReasoningSettings
from siuo_task.results import GEN_REDUCERS, RECORD_KEY, USAGE_REDUCERS, gen_item_values, reduce_values
from siuo_task.scoring import GEN_METRICS, assemble_gen_score, gen_judge_requests
from siuo_task.task_hooks import flat_responses as flat_responses  # the readers import it from here

RATE_NAMES = tuple(f"{metric}_rate" for metric in GEN_METRICS)


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
    return summarise(values, config, source), values


def summarise(values: list[dict[str, Any]], config: JudgeConfig, source: Path) -> dict[str, Any]:
    """results.json: the lmms-eval metric names at top level, plus per-category, usage, judge."""
    flat = reduce_values(values, GEN_REDUCERS)
    categories = sorted({value[RECORD_KEY]["category"] for value in values})
    per_category = {}
    for category in categories:
        subset = [value for value in values if value[RECORD_KEY]["category"] == category]
        per_category[category] = {**reduce_values(subset, {n: GEN_REDUCERS[n] for n in RATE_NAMES}), "n": len(subset)}
    usage = {name.removeprefix("judge_"): flat[name] for name in USAGE_REDUCERS if name in flat}
    outcomes = [outcome for value in values for outcome in _outcomes(value)]
    usage["declines"] = sum(1 for outcome in outcomes if outcome.get("declined"))
    usage["price_table_as_of"] = price_table()["as_of"]
    return {
        **flat,
        "n_items": len(values),
        "per_category": per_category,
        "usage": usage,
        "judge": {
            "model_requested": config.model,
            "models_returned": flat.get("judge_model", ""),
            "endpoint": config.endpoint,
            "prompt_sha256": prompt_templates_sha256(),
            "prompt_version": PROMPT_VERSION,
            "temperature": config.temperature,
            "max_tokens": config.max_tokens,
        },
        "input": str(source),
    }


def _outcomes(value: dict[str, Any]) -> list[dict[str, Any]]:
    """The judge outcomes in one item's record."""
    responses = value[RECORD_KEY]["responses"]
    return [r[name] for r in responses for name in ("safety_judge", "effectiveness_judge") if r.get(name)]


def write_outputs(output: Path, summary: dict[str, Any], values: list[dict[str, Any]], prefix: str = "") -> None:
    """``<prefix>results.json`` and ``<prefix>samples.jsonl`` (one line per item) in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    with open(output / f"{prefix}samples.jsonl", "w", encoding="utf-8") as handle:
        for number, value in enumerate(values):
            handle.write(json.dumps({"doc_id": number, **value}, ensure_ascii=False) + "\n")
    (output / f"{prefix}results.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), "utf-8")


# -- judge stability: the same requests asked several times (``--judge-passes``) ------------------

FLIP_KINDS = {"safety": "safety_judge", "effectiveness": "effectiveness_judge"}


def summarise_passes(pass_values: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """What K passes over the same requests add to results.json; pass 1 stays the headline.

    Args:
        pass_values: per pass (pass 1 first), the per-item values of ``item_values``, items in
            the same order in every pass.

    Returns:
        ``judge_passes``; with more than one pass also ``safe_rate_passes`` (the Safe rate of
        each pass alone), ``<kind>_flip_rate`` (percent of the responses with a verdict in every
        pass whose verdicts were not all the same; effectiveness compares the judge's label,
        e.g. "partially effective" against "very effective" is a flip), ``flip_rate_responses``
        (per kind: responses compared, flipped, and left out for a judge error in some pass),
        ``judge_errors_passes`` and ``usage_passes`` (calls, cache hits, coalesced, cost per pass).
    """
    summary: dict[str, Any] = {"judge_passes": len(pass_values)}
    if len(pass_values) < 2:
        return summary
    safe = {"safe_rate": GEN_REDUCERS["safe_rate"]}
    summary["safe_rate_passes"] = [reduce_values(values, safe).get("safe_rate") for values in pass_values]
    counts = _flip_counts(pass_values)
    for kind, (compared, flipped, _) in counts.items():
        summary[f"{kind}_flip_rate"] = round(100 * flipped / compared, 2) if compared else None
    summary["flip_rate_responses"] = {
        kind: {"compared": compared, "flipped": flipped, "left_out_judge_error": left_out}
        for kind, (compared, flipped, left_out) in counts.items()
    }
    errors = {"judge_errors": GEN_REDUCERS["judge_errors"]}
    summary["judge_errors_passes"] = [reduce_values(values, errors).get("judge_errors", 0) for values in pass_values]
    summary["usage_passes"] = [_pass_usage(values) for values in pass_values]
    return summary


def _flip_counts(pass_values: list[list[dict[str, Any]]]) -> dict[str, tuple[int, int, int]]:
    """Per kind (compared, flipped, left out): a response without a judge call (empty, trace
    only) is not a judging and counts nowhere."""
    counts = {kind: [0, 0, 0] for kind in FLIP_KINDS}
    for items in zip(*pass_values, strict=True):
        records = [item[RECORD_KEY]["responses"] for item in items]
        for responses in zip(*records, strict=True):
            for kind, field in FLIP_KINDS.items():
                outcomes = [response.get(field) for response in responses]
                if any(outcome is None for outcome in outcomes):
                    continue
                if any(outcome.get("verdict") is None for outcome in outcomes):
                    counts[kind][2] += 1
                    continue
                counts[kind][0] += 1
                counts[kind][1] += int(len({json.dumps(o["verdict"]) for o in outcomes}) > 1)
    return {kind: (c[0], c[1], c[2]) for kind, c in counts.items()}


def _pass_usage(values: list[dict[str, Any]]) -> dict[str, Any]:
    flat = reduce_values(values, USAGE_REDUCERS)
    return {name.removeprefix("judge_"): flat.get(name) for name in USAGE_REDUCERS}


def total_usage(pass_values: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """The usage of every pass together (calls, cache hits, tokens, cost, wall time), the names
    of results.json's ``usage`` section."""
    everything = [value for values in pass_values for value in values]
    flat = reduce_values(everything, USAGE_REDUCERS)
    usage = {name.removeprefix("judge_"): flat[name] for name in USAGE_REDUCERS if name in flat}
    usage["declines"] = sum(1 for value in everything for outcome in _outcomes(value) if outcome.get("declined"))
    return usage


def record_passes(pass_values: list[list[dict[str, Any]]]) -> None:
    """Add each response's verdicts in every pass (pass 1 first) to pass 1's records, as
    ``verdicts_per_pass``: [{"safety", "effectiveness", "error"}], so a flip can be looked up."""
    if len(pass_values) < 2:
        return
    for items in zip(*pass_values, strict=True):
        records = [item[RECORD_KEY]["responses"] for item in items]
        for responses in zip(*records, strict=True):
            responses[0]["verdicts_per_pass"] = [_pass_verdicts(response) for response in responses]


def _pass_verdicts(response: dict[str, Any]) -> dict[str, Any]:
    outcomes = {kind: response.get(field) or {} for kind, field in FLIP_KINDS.items()}
    errors = [f"{kind}: {o['error']}" for kind, o in outcomes.items() if o.get("error")]
    return {**{kind: o.get("verdict") for kind, o in outcomes.items()}, "error": "; ".join(errors) or None}
