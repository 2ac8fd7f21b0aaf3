"""Judging a whole sweep at once: many runs' responses, one engine, one bill (``siuo-eval judge``).

Inputs are found recursively under the given paths by the registered readers (every
harness's samples, logs or predictions of siuo_gen / siuo_gen_greedy, ``samples.jsonl`` written
by ``siuo-eval judge``, the authors' format). Each run is named by the one naming rule (the
model its harness recorded, plus a variant's suffix); ``NAME=PATH`` overrides.
Every run's judge calls go through one engine (one concurrency bound, one cache, coalescing
across runs) and one progress bar; each run gets ``DIR/<run>/results.json`` and
``samples.jsonl``, and the sweep ``DIR/leaderboard.csv`` and ``leaderboard.json``.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from siuo_task.card import GEN_HEADLINE
from siuo_task.data import GenItem, SiuoData
from siuo_task.errors import DataError, SiuoError
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.pricing import price_for
from siuo_task.judge.request import JudgeOutcome, JudgeRequest
from siuo_task.judge.tokens import EXPECTED_COMPLETION_TOKENS, request_tokens
from siuo_task.rejudge import ResponseSet, item_values, match_items, pair_requests
from siuo_task.runs.readers import Note, ResponsesFile
from siuo_task.summary import judge_results, record_passes, summarise_passes, total_usage

Log = Callable[[str], None]
BATCH_DISCOUNT = 0.5  # the OpenAI Batch API's price relative to online calls
HEADLINE = GEN_HEADLINE


@dataclass
class LoadedRun:
    run: ResponsesFile
    pairs: list[tuple[GenItem, ResponseSet]]
    batches: list[list[JudgeRequest]] = field(default_factory=list)


# -- loading and judging -------------------------------------------------------------------------


def load_runs(runs: list[ResponsesFile], data: SiuoData) -> tuple[list[LoadedRun], list[Note]]:
    """Read and validate every run; a broken input becomes a Note and the others go on."""
    loaded, problems = [], []
    for run in runs:
        try:
            response_sets = run.read(data)
            if not response_sets:
                raise DataError(f"'{run.path}' holds no items: nothing to judge (is the generation run finished?)")
            pairs = match_items(response_sets, data)
        except SiuoError as exc:
            problems.append(Note(run.path, str(exc), failure=True))
            continue
        loaded.append(LoadedRun(run, pairs, pair_requests(pairs)))
    return loaded, problems


def pass_requests(requests: list[JudgeRequest], repeat: int) -> list[JudgeRequest]:
    """The requests of pass ``repeat + 1``: pass 1 is the requests as they are (the same cache
    keys as a run without passes); each later pass asks them again under its own keys."""
    return requests if repeat == 0 else [replace(request, repeat=repeat) for request in requests]


def all_requests(loaded: list[LoadedRun], passes: int = 1) -> list[JudgeRequest]:
    """Every run's judge calls, pass after pass."""
    first = [request for run in loaded for batch in run.batches for request in batch]
    return [request for repeat in range(passes) for request in pass_requests(first, repeat)]


@dataclass
class CostEstimate:
    """Judge calls a run still needs after the cache and coalescing, and their estimated bill."""

    name: str
    requests: int
    coalesced: int
    cached: int
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


def estimate(loaded: list[LoadedRun], engine: JudgeEngine, batch: bool, passes: int = 1) -> list[CostEstimate]:
    """Per-run estimates over ``passes`` passes; a call shared by several runs is counted for
    the first one."""
    seen: set[str] = set()
    price = price_for(engine.config.model, engine.config.endpoint)
    estimates = []
    for run in loaded:
        first = [request for batch_ in run.batches for request in batch_]
        requests = [request for repeat in range(passes) for request in pass_requests(first, repeat)]
        needed, cached, coalesced = [], 0, 0
        for request in requests:
            key = engine.key(request)
            if key in seen:
                coalesced += 1
                continue
            seen.add(key)
            if engine.is_known(key):
                cached += 1
            else:
                needed.append(request)
        tokens_in = sum(request_tokens(r.prompt, r.image_path, engine.config.model) for r in needed)
        tokens_out = EXPECTED_COMPLETION_TOKENS * len(needed)
        cost = None
        if price is not None:
            cost = (tokens_in * price["input"] + tokens_out * price["output"]) / 1_000_000
            cost = round(cost * (BATCH_DISCOUNT if batch else 1.0), 4)
        counts = (len(requests), coalesced, cached, len(needed), tokens_in, tokens_out)
        estimates.append(CostEstimate(run.run.name, *counts, cost))
    return estimates


class Progress:
    """Running totals for the progress bar: calls done, tokens, cost at the judge's price."""

    def __init__(self, model: str, discount: float, endpoint: str | None = None) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._model = model
        self._endpoint = endpoint
        self._discount = discount

    def add(self, outcome: JudgeOutcome) -> None:
        self.prompt_tokens += outcome.prompt_tokens
        self.completion_tokens += outcome.completion_tokens

    @property
    def cost_usd(self) -> float | None:
        price = price_for(self._model, self._endpoint)
        if price is None:
            return None
        cost = self.prompt_tokens * price["input"] + self.completion_tokens * price["output"]
        return cost / 1_000_000 * self._discount


def judge_loaded(
    loaded: list[LoadedRun],
    engine: JudgeEngine,
    on_done: Callable[[JudgeOutcome], None] | None = None,
    repeat: int = 0,
) -> list[list[dict[str, Any]]]:
    """One grade_many over every run's calls (one bound, one cache, coalescing across runs);
    ``repeat`` > 0 judges them again as pass ``repeat + 1`` (see pass_requests)."""
    started = time.time()
    outcomes = engine.grade_many(pass_requests(all_requests(loaded), repeat), on_done)
    window = (started, time.time())
    values, offset = [], 0
    for run in loaded:
        count = sum(len(batch) for batch in run.batches)
        run_outcomes = outcomes[offset : offset + count]
        offset += count
        values.append(item_values(run.pairs, run.batches, run_outcomes, engine.config, window))
    return values


def run_summary(
    run: LoadedRun,
    values: list[dict[str, Any]],
    config: JudgeConfig,
    batch: str | None,
    later_passes: list[list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """results.json of one run: the headline from ``values`` (pass 1); ``later_passes`` (the
    values of passes 2..K) add the stability numbers, and usage then counts every pass."""
    passes = [values, *(later_passes or [])]
    summary = judge_results(values, config, run.run.path)
    summary.update(summarise_passes(passes))
    if len(passes) > 1:
        usage = {**total_usage(passes), "price_table_as_of": summary["usage"]["price_table_as_of"]}
        summary["usage"] = usage
        summary.update({f"judge_{name}": usage[name] for name in ("calls", "cache_hits", "coalesced", "cost_usd")})
        summary.update(judge_prompt_tokens=usage["prompt_tokens"], judge_completion_tokens=usage["completion_tokens"])
        summary["judge_wall_seconds"] = usage["wall_seconds"]
        record_passes(passes)
    found = run.run
    summary["run"] = {
        "name": found.name,
        "model": found.model,
        "task": found.task,
        "suffix": found.suffix,
        "harness": found.harness,
        "kind": found.kind,
        "named_by": found.named_by,
    }
    if batch:
        usage = summary["usage"]
        usage["batch"] = batch
        if batch == "openai" and usage.get("cost_usd") is not None:
            usage["cost_usd"] = round(usage["cost_usd"] * BATCH_DISCOUNT, 6)
            usage["cost_note"] = "OpenAI Batch API price (half the online price)"
    return summary


# -- writing -------------------------------------------------------------------------------------


def keep_earlier(path: Path, log: Log) -> None:
    """Move an existing file aside (``<name>.<UTC stamp>.bak``) and say so; never overwrite silently."""
    if path.exists():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        backup = path.with_name(f"{path.name}.{stamp}.bak")
        number = 2
        while backup.exists():
            backup, number = path.with_name(f"{path.name}.{stamp}-{number}.bak"), number + 1
        path.rename(backup)
        log(f"kept the earlier {path} as {backup}")


def leaderboard_rows(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, summary in summaries.items():
        usage = summary.get("usage", {})
        row: dict[str, Any] = {"run": name, "input": summary.get("input"), "n_items": summary.get("n_items")}
        for metric in HEADLINE:
            low, high = summary.get(f"{metric}_ci95") or [None, None]
            row.update({metric: summary.get(metric), f"{metric}_ci95_low": low, f"{metric}_ci95_high": high})
        row.update(
            judge_errors=summary.get("judge_errors", 0),
            judge_declines=usage.get("declines", 0),
            judge_calls=usage.get("calls"),
            judge_cache_hits=usage.get("cache_hits"),
            judge_coalesced=usage.get("coalesced"),
            judge_cost_usd=usage.get("cost_usd"),
            complete=not summary.get("judge_errors"),
        )
        spread = summary.get("safe_rate_passes")
        if spread:
            # Only for runs judged more than once: the Safe rate's range over the passes.
            known = [value for value in spread if value is not None]
            row.update(
                judge_passes=summary.get("judge_passes"),
                safe_rate_passes_min=min(known) if known else None,
                safe_rate_passes_max=max(known) if known else None,
                safety_flip_rate=summary.get("safety_flip_rate"),
                effectiveness_flip_rate=summary.get("effectiveness_flip_rate"),
            )
        rows.append(row)
    return rows


def write_leaderboard(output: Path, rows: list[dict[str, Any]], problems: list[Note], log: Log) -> list[Path]:
    """``leaderboard.json`` (runs and inputs that failed) and ``leaderboard.csv`` (runs)."""
    json_path, csv_path = output / "leaderboard.json", output / "leaderboard.csv"
    for path in (json_path, csv_path):
        keep_earlier(path, log)
    failed = [{"path": str(p.path), "reason": p.reason} for p in problems if p.failure]
    json_path.write_text(json.dumps({"runs": rows, "failed_inputs": failed}, indent=2), encoding="utf-8")
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        fields = list(dict.fromkeys(name for row in rows for name in row)) or ["run"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return [json_path, csv_path]
