"""Judge responses that already exist, without generating again (``siuo-eval judge``).

Inputs: the samples JSONL our siuo_gen tasks write (lmms-eval ``--log_samples``, or a
``samples.jsonl`` written here), the authors' results format (a JSON list of siuo_gen.json
items, each with a ``responses`` list of strings), or VLMEvalKit predictions of its built-in
SIUO_GEN or of our VLMEvalKit datasets. Outputs use the same per-item values and reductions as
the lmms-eval tasks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siuo_task.adapters.inspect_ai.logs import is_inspect_log, read_inspect_responses
from siuo_task.data import GenItem, SiuoData
from siuo_task.errors import DataError
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine, JudgeOutcome, JudgeRequest
from siuo_task.judge.pricing import price_table
from siuo_task.prompts import PROMPT_VERSION, prompt_templates_sha256
from siuo_task.reasoning import ReasoningSettings
from siuo_task.results import GEN_REDUCERS, RECORD_KEY, USAGE_REDUCERS, gen_item_values, reduce_values
from siuo_task.scoring import GEN_METRICS, assemble_gen_score, gen_judge_requests

RATE_NAMES = tuple(f"{metric}_rate" for metric in GEN_METRICS)


@dataclass(frozen=True, slots=True)
class ResponseSet:
    """One item's existing responses, as read from an input file."""

    question_id: int
    responses: tuple[str, ...]


def read_responses(path: Path, data: SiuoData | None = None) -> list[ResponseSet]:
    """Read responses from a samples JSONL, the authors' results JSON, an Inspect log (.eval/.json)
    or VLMEvalKit predictions (.xlsx/.tsv/.csv, which need ``data`` to map questions to items);
    errors name the line/item. An input with no items is an error."""
    response_sets = _read_any(path, data)
    if not response_sets:
        raise DataError(f"'{path}' holds no items: nothing to judge (is the generation run finished?)")
    return response_sets


def _read_any(path: Path, data: SiuoData | None) -> list[ResponseSet]:
    if not path.is_file():
        raise DataError(f"input '{path}' does not exist")
    if is_inspect_log(path):
        return read_inspect_responses(path)
    if path.suffix in VLMEVAL_SUFFIXES:
        if data is None:
            raise DataError(f"reading VLMEvalKit predictions '{path}' needs the SIUO data")
        return read_vlmeval_predictions(path, data)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [_from_sample_line(line, path, number, data) for number, line in _lines(text)]
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"'{path}' is neither JSONL samples nor a JSON list ({exc})") from exc
    if not isinstance(rows, list):
        raise DataError(f"'{path}': expected the authors' results format, a JSON list of items with 'responses'")
    return [_from_authors_row(row, path, index) for index, row in enumerate(rows)]


VLMEVAL_SUFFIXES = (".xlsx", ".tsv", ".csv")
# VLMEvalKit writes this into the prediction when its model call failed: not a response.
VLMEVAL_INFER_FAIL = "Failed to obtain answer"


def read_vlmeval_predictions(path: Path, data: SiuoData) -> list[ResponseSet]:
    """Responses from a VLMEvalKit predictions file: ours (``question_id`` and ``repeat``
    columns, several rows per item) or its built-in SIUO_GEN (matched by question text)."""
    import pandas as pd

    try:
        if path.suffix == ".xlsx":
            frame = pd.read_excel(path)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    except Exception as exc:  # pandas and openpyxl raise many types for a damaged file
        raise DataError(f"cannot read '{path}' as a VLMEvalKit predictions file ({type(exc).__name__}: {exc})") from exc
    if "prediction" not in frame.columns:
        raise DataError(f"'{path}' has no 'prediction' column: pass a VLMEvalKit predictions file")
    by_question = {item.question: item.question_id for item in data.gen}
    grouped: dict[int, list[tuple[int, str]]] = {}
    failed = []
    for row_number, row in enumerate(frame.to_dict("records"), start=2):
        qid = _vlmeval_question_id(row, by_question, f"'{path}' row {row_number}")
        prediction = "" if pd.isna(row["prediction"]) else str(row["prediction"])
        if VLMEVAL_INFER_FAIL in prediction:
            failed.append(qid)
        order = int(row["repeat"]) if "repeat" in row and not pd.isna(row["repeat"]) else row_number
        grouped.setdefault(qid, []).append((order, prediction))
    if failed:
        raise DataError(
            f"'{path}': VLMEvalKit's model call failed for item(s) {sorted(set(failed))[:20]}; "
            "rerun its inference for them (their predictions are not responses to score)"
        )
    return [ResponseSet(qid, tuple(text for _, text in sorted(rows))) for qid, rows in grouped.items()]


def _vlmeval_question_id(row: dict[str, Any], by_question: dict[str, int], where: str) -> int:
    if "question_id" in row and row["question_id"] == row["question_id"]:  # not NaN
        return int(row["question_id"])
    question = str(row.get("question", "")).strip()
    if question not in by_question:
        raise DataError(f"{where}: question {question[:60]!r} is not a SIUO item; is this a SIUO_GEN predictions file?")
    return by_question[question]


def _lines(text: str) -> list[tuple[int, str]]:
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _from_sample_line(line: str, path: Path, number: int, data: SiuoData | None = None) -> ResponseSet:
    where = f"'{path}' line {number}"
    try:
        sample = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where} is not JSON ({exc})") from exc
    record = sample.get(RECORD_KEY) if isinstance(sample, dict) else None
    if record is None and isinstance(sample, dict) and _is_generation_only_sample(sample):
        return _from_generation_only_sample(sample, data, where)
    if not isinstance(record, dict) or "responses" not in record:
        raise DataError(
            f"{where} has no '{RECORD_KEY}' record: pass the samples file of a siuo_gen or "
            "siuo_gen_greedy run (lmms-eval --log_samples), not siuo_mcq's"
        )
    responses = [entry.get("response") if isinstance(entry, dict) else None for entry in record["responses"]]
    return _response_set(record.get("question_id"), responses, where)


def _is_generation_only_sample(sample: dict[str, Any]) -> bool:
    """A line of ``lmms-eval --predict_only --log_samples``: lmms-eval skips process_results in
    that mode, so there is no record, only the prompt ("input"), target and responses."""
    return "bypass" in sample and isinstance(sample.get("input"), str) and "filtered_resps" in sample


def _from_generation_only_sample(sample: dict[str, Any], data: SiuoData | None, where: str) -> ResponseSet:
    """The item is found by its question and reference answer (siuo_gen's prompt and target)."""
    if data is None:
        raise DataError(f"reading {where} (a generation-only lmms-eval sample) needs the SIUO data")
    key = (sample["input"].strip(), str(sample.get("target", "")).strip())
    items = {(item.question.strip(), item.reference_answer.strip()): item.question_id for item in data.gen}
    if key not in items:
        raise DataError(
            f"{where}: prompt {key[0][:60]!r} is not a SIUO open-ended question; pass the samples "
            "file of a siuo_gen or siuo_gen_greedy run (siuo_mcq's needs no judge)"
        )
    # What process_results would have been given: the filtered responses, one per repeat. Our
    # tasks turn lmms-eval's think-stripping off, so they are the raw text.
    raw = sample["filtered_resps"]
    flat: list[Any] = []
    for entry in raw if isinstance(raw, list) else [raw]:
        flat.extend(entry if isinstance(entry, list) else [entry])
    return _response_set(items[key], flat, where)


def _from_authors_row(row: Any, path: Path, index: int) -> ResponseSet:
    where = f"'{path}' item #{index}"
    if not isinstance(row, dict):
        raise DataError(f"{where} is a {type(row).__name__}, expected an object with 'question_id' and 'responses'")
    return _response_set(row.get("question_id"), row.get("responses"), where)


def _response_set(question_id: Any, responses: Any, where: str) -> ResponseSet:
    if not isinstance(question_id, int) or isinstance(question_id, bool):
        raise DataError(f"{where}: missing or non-integer 'question_id'")
    if not isinstance(responses, list) or not responses or not all(isinstance(r, str) for r in responses):
        raise DataError(f"{where} (item {question_id}): 'responses' must be a non-empty list of strings")
    return ResponseSet(question_id, tuple(responses))


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
