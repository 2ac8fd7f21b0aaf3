"""Judging responses that already exist: ``siuo-eval judge``'s pipeline, and the one way every
entry point runs the judge over items' responses.

``judge_sweep`` runs the steps in order, and the data go through them once:

1. **discover**: every run's responses under the inputs (``siuo_task.runs.find_responses``),
   read and paired with their items;
2. **plan**: the judge requests of every run and pass, and the dry-run bill (the price, with the
   batch discount, is ``Pricing``'s alone);
3. **judge**: one engine for every run (one concurrency bound, one cache, coalescing across
   runs), after one probe call; or an export, an import, an OpenAI batch;
4. **summarise**: results.json of each run, the leaderboard rows;
5. **write**: ``DIR/<run>/results.json`` and ``samples.jsonl``, ``DIR/leaderboard.csv`` and
   ``leaderboard.json``, keeping any earlier file.

The command (``judge_command.py``) parses the arguments and shows what happens through a
``Show``; it decides the exit status. The judge step is ``siuo_task.benchmark.scoring.grade``, the one
way every entry point runs the judge: the harnesses' in-run judging (``siuo_task.harness.judged_ahead``,
``score_gen_item``, Inspect's scorer) calls it too, and VLMEvalKit's ``evaluate`` judges through
``siuo_task.harness.judging.judge_responses``.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from siuo_task.benchmark.card import GEN_HEADLINE
from siuo_task.benchmark.data import GenItem, SiuoData
from siuo_task.benchmark.panel_vote import vote
from siuo_task.benchmark.reasoning import ReasoningSettings
from siuo_task.benchmark.scoring import (
    Graded,
    gen_judge_requests,
    grade_batches,
    pass_requests,
)
from siuo_task.benchmark.summary import JudgeResults, judge_results, record_passes, summarise_passes, total_usage
from siuo_task.commands.output_lock import output_lock
from siuo_task.errors import DataError, JudgeConfigError, SiuoError
from siuo_task.harness.judging import OnDone, item_values, match_items, write_outputs
from siuo_task.judge.bar_status import rate_limit_status
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import CallTally, JudgeEngine
from siuo_task.judge.engines import AnyEngine, AnyJudge, judges_of, new_engine
from siuo_task.judge.panel import PANEL_VARIABLE, PanelEngine
from siuo_task.judge.pricing import estimate_cost_usd
from siuo_task.judge.probe import ProbeResult, probe
from siuo_task.judge.request import JudgeOutcome, JudgeRequest
from siuo_task.judge.tokens import EXPECTED_COMPLETION_TOKENS, request_tokens
from siuo_task.judge.usage import UsageTotals
from siuo_task.runs import Note, find_responses
from siuo_task.runs.files import ResponseSet
from siuo_task.runs.readers import ResponsesFile, split_spec
from siuo_task.settings import Settings

Log = Callable[[str], None]
BATCH_DISCOUNT = 0.5  # the OpenAI Batch API's price relative to online calls
HEADLINE = GEN_HEADLINE


# -- 1. discover ------------------------------------------------------------------------------------


@dataclass
class LoadedRun:
    """One run's responses paired with their items, and the judge requests of each item."""

    run: ResponsesFile
    pairs: list[tuple[GenItem, ResponseSet]]
    batches: list[list[JudgeRequest]] = field(default_factory=list)
    # What a user should know before trusting the rates (partial coverage, other question texts).
    warnings: list[str] = field(default_factory=list)
    # The trace settings the requests were made with (the outcomes are split the same way).
    reasoning: ReasoningSettings = field(default_factory=ReasoningSettings)


def input_warnings(path: Path, pairs: list[tuple[GenItem, ResponseSet]], data: SiuoData) -> list[str]:
    """An input that covers only some items, or whose question texts differ from the data's."""
    warnings = []
    if len(pairs) < len(data.gen):
        warnings.append(
            f"'{path}' covers {len(pairs)} of the {len(data.gen)} items under '{data.root}': its rates rest on "
            "those items only (a PARTIAL run, not comparable with full runs or the paper's)"
        )
    differing = [
        (item, response_set.question)
        for item, response_set in pairs
        if response_set.question is not None and response_set.question.strip() != item.question.strip()
    ]
    if differing:
        item, question = differing[0]
        warnings.append(
            f"'{path}': the question text of {len(differing)} item(s) differs from the SIUO data (first: item "
            f"{item.question_id}, {str(question).strip()[:60]!r} in the input, {item.question.strip()[:60]!r} in "
            "the data): the judge is shown the data's question; were the responses made from other data?"
        )
    return warnings


def load_runs(
    runs: list[ResponsesFile], data: SiuoData, reasoning: ReasoningSettings
) -> tuple[list[LoadedRun], list[Note]]:
    """Read and validate every run; a broken input becomes a failure note and the others go on."""
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
        batches = [gen_judge_requests(item, response_set.responses, reasoning) for item, response_set in pairs]
        loaded.append(LoadedRun(run, pairs, batches, input_warnings(run.path, pairs, data), reasoning))
    return loaded, problems


# -- 2. plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pricing:
    """The judge's price per token, with the batch discount: the one place it is applied."""

    model: str
    endpoint: str | None
    batch: str | None = None

    @property
    def factor(self) -> float:
        return BATCH_DISCOUNT if self.batch == "openai" else 1.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for these tokens (None: the model is not in the price table)."""
        online = estimate_cost_usd([self.model], prompt_tokens, completion_tokens, self.endpoint)
        return None if online is None else self.of(online)

    def of(self, online_cost: float) -> float:
        """What a cost reckoned at the online price comes to."""
        return online_cost * self.factor


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


def estimate(loaded: list[LoadedRun], engine: JudgeEngine, pricing: Pricing, passes: int = 1) -> list[CostEstimate]:
    """Per-run estimates over ``passes`` passes; a call shared by several runs is counted for
    the first one."""
    seen: set[str] = set()
    estimates = []
    for run in loaded:
        requests = all_requests([run], passes)
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
        cost = pricing.cost(tokens_in, tokens_out)
        counts = (len(requests), coalesced, cached, len(needed), tokens_in, tokens_out)
        estimates.append(CostEstimate(run.run.name, *counts, None if cost is None else round(cost, 4)))
    return estimates


# -- 3. judge ---------------------------------------------------------------------------------------


class Progress:
    """Running totals for the progress bar: the calls the answered requests took (cache hits and
    coalesced copies take none), tokens, cost at the judge's price."""

    def __init__(self, pricing: Pricing) -> None:
        self.totals = UsageTotals()
        self._pricing = pricing

    def add(self, outcome: JudgeOutcome) -> None:
        self.totals.add(outcome)

    @property
    def cost_usd(self) -> float | None:
        return self._pricing.cost(self.totals.prompt_tokens, self.totals.completion_tokens)


def judge_loaded(
    loaded: list[LoadedRun], engine: AnyEngine, on_done: OnDone | None = None, repeat: int = 0
) -> list[list[dict[str, Any]]]:
    """One grade over every run's calls (one bound, one cache, coalescing across runs);
    ``repeat`` > 0 judges them again as pass ``repeat + 1`` (see pass_requests)."""
    graded = grade_batches([batch for run in loaded for batch in run.batches], engine, on_done, repeat)
    values, offset = [], 0
    for run in loaded:
        mine = Graded(graded.outcomes[offset : offset + len(run.batches)], graded.started, graded.finished)
        offset += len(run.batches)
        values.append(item_values(run.pairs, mine, engine.config, run.reasoning))
    return values


# -- 4. summarise -----------------------------------------------------------------------------------


def run_summary(
    run: LoadedRun,
    values: list[dict[str, Any]],
    config: AnyJudge,
    pricing: Pricing,
    later_passes: list[list[dict[str, Any]]] | None = None,
) -> JudgeResults:
    """results.json of one run: the headline from ``values`` (pass 1); ``later_passes`` (the
    values of passes 2..K) add the stability numbers, and usage then counts every pass."""
    passes = [values, *(later_passes or [])]
    summary = judge_results(values, config, run.run.path)
    summary.passes = summarise_passes(passes)
    if len(passes) > 1:
        usage = {**total_usage(passes), "price_table_as_of": summary.usage["price_table_as_of"]}
        summary.usage = usage
        # Every count of judge use covers every pass, as usage does (judge_errors stays the
        # headline's, pass 1; judge_errors_passes has each pass's).
        counted = ("calls", "cache_hits", "coalesced", "cost_usd", "declines")
        summary.metrics.update({f"judge_{name}": usage[name] for name in counted})
        summary.metrics.update(
            judge_prompt_tokens=usage["prompt_tokens"], judge_completion_tokens=usage["completion_tokens"]
        )
        summary.metrics["judge_wall_seconds"] = usage["wall_seconds"]
        record_passes(passes)
    found = run.run
    summary.run = {
        "name": found.name,
        "model": found.model,
        "task": found.task,
        "suffix": found.suffix,
        "harness": found.harness,
        "kind": found.kind,
        "named_by": found.named_by,
    }
    if pricing.batch:
        summary.usage["batch"] = pricing.batch
        if pricing.batch == "openai":
            summary.usage["cost_note"] = "OpenAI Batch API price (half the online price)"
    at_price(summary, pricing)
    return summary


def at_price(summary: JudgeResults, pricing: Pricing) -> None:
    """Every cost in results.json at the price the calls were paid (``Pricing.of``: the batch
    discount), so ``judge_cost_usd``, ``usage.cost_usd`` and each pass's cost state one figure.
    The reductions price each item at the online price; this is the one place that changes it."""
    costed = [summary.usage, *summary.passes.get("usage_passes", [])]
    for usage in costed:
        if usage.get("cost_usd") is not None:
            usage["cost_usd"] = round(pricing.of(usage["cost_usd"]), 6)
    summary.metrics["judge_cost_usd"] = summary.usage.get("cost_usd")


def leaderboard_rows(summaries: dict[str, JudgeResults]) -> list[dict[str, Any]]:
    rows = []
    for name, summary in summaries.items():
        usage = summary.usage
        row: dict[str, Any] = {"run": name, "input": summary.input, "n_items": summary.n_items}
        for metric in HEADLINE:
            low, high = summary.ci95(metric)
            row.update({metric: summary.rate(metric), f"{metric}_ci95_low": low, f"{metric}_ci95_high": high})
        row.update(
            judge_errors=summary.judge_errors,
            judge_declines=usage.get("declines", 0),
            judge_calls=usage.get("calls"),
            judge_cache_hits=usage.get("cache_hits"),
            judge_coalesced=usage.get("coalesced"),
            judge_cost_usd=usage.get("cost_usd"),
            complete=summary.complete,
        )
        spread = summary.passes.get("safe_rate_passes")
        if spread:
            # Only for runs judged more than once: the Safe rate's range over the passes.
            known = [value for value in spread if value is not None]
            row.update(
                judge_passes=summary.judge_passes,
                safe_rate_passes_min=min(known) if known else None,
                safe_rate_passes_max=max(known) if known else None,
                safety_flip_rate=summary.passes.get("safety_flip_rate"),
                effectiveness_flip_rate=summary.passes.get("effectiveness_flip_rate"),
            )
        rows.append(row)
    return rows


# -- 5. write ---------------------------------------------------------------------------------------


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


# -- the pipeline -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeJob:
    """What ``siuo-eval judge`` was asked to do."""

    inputs: list[str]
    output: Path
    settings: Settings  # read when the command started
    passes: int = 1
    batch: str | None = None  # "openai": judge through the OpenAI Batch API
    dry_run: bool = False
    export_batch: Path | None = None
    import_batch: Path | None = None


class Show(Protocol):
    """How the command shows each step (the pipeline prints nothing itself)."""

    def say(self, text: str) -> None: ...

    def found(self, runs: list[ResponsesFile], notes: list[Note]) -> None: ...

    def imported(self, path: Path, replies: int, failed: int, unknown: int) -> None: ...

    def estimates(self, rows: list[CostEstimate], config: JudgeConfig) -> None: ...

    def exported(self, path: Path, count: int, config: JudgeConfig) -> None: ...

    def probed(self, result: ProbeResult) -> None: ...

    def progress(
        self, total: int, pricing: Pricing, status: Callable[[], str | None] | None = None
    ) -> AbstractContextManager[OnDone]: ...

    def judged(self, name: str, summary: JudgeResults) -> None: ...


@dataclass
class Judged:
    """What a judging produced: each run's results.json, and every input noted or failed."""

    summaries: dict[str, JudgeResults] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    config: AnyJudge | None = None  # the judge (or panel), as configured
    tally: CallTally = field(default_factory=CallTally)  # what the calls came to (whether a rerun helps)
    # Each judge of a panel that stopped during the run, and why (its verdicts before, and
    # every other judge's, are in the results and the cache).
    stopped: dict[str, BaseException] = field(default_factory=dict)
    cache_path: Path | None = None  # the cache file used (moved off a network file system, see cache.py)

    @property
    def failures(self) -> list[Note]:
        return [note for note in self.notes if note.failure]

    @property
    def cache(self) -> Path | None:
        """The judge cache the run used: the file in use (see ``cache_path``), else the one
        configured (a panel's judges share it); None with the cache off."""
        return self.cache_path or (self.config.cache_path if self.config else None)


def judge_sweep(job: JudgeJob, load_data: Callable[[], SiuoData], show: Show) -> Judged:
    """discover, plan, judge, summarise, write. The judge settings and the inputs are checked
    before the SIUO data are loaded (which may mean a download), so those mistakes show at once.

    Raises:
        DataError: when no input can be judged (nothing is written then).
        JudgeConfigError: when the judge settings cannot work.
    """
    config = job.settings.judge(require_key=not (job.dry_run or job.export_batch))
    if not isinstance(config, JudgeConfig) and (job.batch or job.export_batch or job.import_batch):
        raise JudgeConfigError(f"--batch, --export-batch and --import-batch take one judge: unset {PANEL_VARIABLE}")
    single = len(job.inputs) == 1 and split_spec(job.inputs[0])[0] is None and Path(job.inputs[0]).is_file()
    finding = find_responses(job.inputs, skip=job.output)
    show.found(finding.runs, finding.notes)
    if not finding.runs:
        raise DataError("no input could be judged (see the lines above); nothing was written")
    if job.dry_run or job.export_batch:  # no call made and nothing written in --output
        return _judge_sweep(job, load_data, show, config, finding.runs, finding.notes, single)
    # One writer per output: a second command on it waits (same cache) or refuses (output_lock.py).
    with output_lock(job.output, [judge.cache_path for judge in judges_of(config)], show.say):
        return _judge_sweep(job, load_data, show, config, finding.runs, finding.notes, single)


def _judge_sweep(
    job: JudgeJob,
    load_data: Callable[[], SiuoData],
    show: Show,
    config: AnyJudge,
    runs: list[ResponsesFile],
    notes: list[Note],
    single: bool,
) -> Judged:
    loaded, broken = load_runs(runs, load_data(), job.settings.reasoning)
    judged = Judged(notes=notes + broken, config=config)
    for problem in broken:
        show.say(f"siuo-eval: error: {problem.reason}")
    for run in loaded:
        for warning in run.warnings:
            show.say(f"siuo-eval: warning: {warning}")
    if not loaded:
        raise DataError("no input could be judged (see the lines above); nothing was written")
    engine = new_engine(config, vote)
    try:
        if isinstance(engine, PanelEngine):
            _judge_panel_with(engine, job, loaded, judged, show, single)
        else:
            _judge_with(engine, job, loaded, judged, show, single)
    finally:
        engine.close()
    judged.tally = engine.tally()
    judged.stopped = engine.stopped if isinstance(engine, PanelEngine) else {}
    judged.cache_path = engine.cache_path if isinstance(engine, JudgeEngine) else None
    return judged


def _judge_with(
    engine: JudgeEngine, job: JudgeJob, loaded: list[LoadedRun], judged: Judged, show: Show, single: bool
) -> None:
    pricing = Pricing(engine.config.model, engine.config.endpoint, job.batch)
    requests = all_requests(loaded, job.passes)
    if job.import_batch:
        _import(engine, requests, job.import_batch, show)
    if job.dry_run:
        show.estimates(estimate(loaded, engine, pricing, job.passes), engine.config)
        return
    if job.export_batch:
        from siuo_task.judge.batch import export_batch

        keep_earlier(job.export_batch, show.say)
        show.exported(job.export_batch, export_batch(engine, requests, job.export_batch), engine.config)
        return
    if not job.import_batch:  # an import makes no call, so no probe
        _check_judge(engine, requests, show)
    if job.batch == "openai":
        _run_openai_batch(engine, requests, job.output, show.say)
    with show.progress(len(requests), pricing, rate_limit_status(engine)) as on_done:
        passes = [judge_loaded(loaded, engine, on_done, repeat) for repeat in range(job.passes)]
    for index, run in enumerate(loaded):
        later = [values[index] for values in passes[1:]]
        judged.summaries[run.run.name] = run_summary(run, passes[0][index], engine.config, pricing, later)
    _write(job.output, loaded, passes[0], judged, show, single)


def _check_judge(engine: JudgeEngine, requests: Sequence[JudgeRequest], show: Show) -> None:
    """The check before judging: one real call for the first request neither answered yet nor
    claimed by another process sharing the cache (claimed here like any call, so processes
    sharing the cache probe different ones); its answer is that request's."""
    pending = next((r for r in requests if not engine.is_known(key := engine.key(r)) and engine.claim(key)), None)
    if pending is not None:
        result = probe(engine, pending, lambda line: show.say(f"siuo-eval: {line}"))
        show.probed(result)
        engine.accept(pending, result.completion)  # the probe was a real judge call: use its answer


def _judge_panel_with(
    engine: PanelEngine, job: JudgeJob, loaded: list[LoadedRun], judged: Judged, show: Show, single: bool
) -> None:
    """A panel's judging: each judge priced, probed and judged with its own engine (one
    engine per judge: its own bound, rate limits, decline watch and cache keys), the panel's
    vote per request (siuo_task.benchmark.panel_vote)."""
    requests = all_requests(loaded, job.passes)
    if job.dry_run:
        for judge_engine in engine.engines:
            config = judge_engine.config
            show.estimates(estimate(loaded, judge_engine, Pricing(config.model, config.endpoint), job.passes), config)
        return
    for judge_engine in engine.engines:
        _check_judge(judge_engine, requests, show)
    pricing = Pricing(engine.config.model, engine.config.endpoint)
    with show.progress(len(requests) * len(engine.engines), pricing, rate_limit_status(engine)) as on_done:
        passes = [judge_loaded(loaded, engine, on_done, repeat) for repeat in range(job.passes)]
    for index, run in enumerate(loaded):
        later = [values[index] for values in passes[1:]]
        judged.summaries[run.run.name] = run_summary(run, passes[0][index], engine.config, pricing, later)
    _write(job.output, loaded, passes[0], judged, show, single)


def _import(engine: JudgeEngine, requests: list[JudgeRequest], path: Path, show: Show) -> None:
    from siuo_task.judge.batch import import_batch

    summary = import_batch(engine, requests, path)
    show.imported(path, summary.replies, len(summary.failed), summary.unknown)
    engine.go_offline(summary.failed, f"no answer for this request in {path}: export the missing calls again")


def _run_openai_batch(engine: JudgeEngine, requests: list[JudgeRequest], output: Path, log: Log) -> None:
    from siuo_task.judge.batch import OpenAIBatchRunner

    runner = OpenAIBatchRunner(engine, output / ".siuo-batch", log)
    try:
        failed = runner.run(requests)
    finally:
        runner.close()
    engine.go_offline(failed, "no answer from the OpenAI batch")


def _write(
    output: Path, loaded: list[LoadedRun], values: list[list[dict[str, Any]]], judged: Judged, show: Show, single: bool
) -> None:
    written: list[Path] = []
    for run, run_values in zip(loaded, values, strict=True):
        folder = output if single else output / run.run.name
        for name in ("results.json", "samples.jsonl"):
            keep_earlier(folder / name, show.say)
        write_outputs(folder, judged.summaries[run.run.name].to_dict(), run_values)
        written += [folder / "results.json", folder / "samples.jsonl"]
        show.judged(run.run.name, judged.summaries[run.run.name])
    if not single:
        written += write_leaderboard(output, leaderboard_rows(judged.summaries), judged.notes, show.say)
    show.say("read: " + ", ".join(str(run.run.path) for run in loaded))
    show.say("wrote: " + ", ".join(str(path) for path in written))
