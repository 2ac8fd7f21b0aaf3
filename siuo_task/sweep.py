"""Judging a whole sweep at once: many runs' responses, one engine, one bill (``siuo-eval judge``).

Inputs are found recursively under the given paths: lmms-eval samples of siuo_gen /
siuo_gen_greedy (``<date>_samples_siuo_gen*.jsonl``), ``samples.jsonl`` written by
``siuo-eval judge``, VLMEvalKit predictions of a SIUO generation dataset
(``<model>_<dataset>.xlsx/.tsv/.csv``) and the authors' format (a JSON list of items with
``responses``). Each run is named by the model its harness recorded; ``NAME=PATH`` overrides.
Every run's judge calls go through one engine (one concurrency bound, one cache, coalescing
across runs) and one progress bar; each run gets ``DIR/<run>/results.json`` and
``samples.jsonl``, and the sweep ``DIR/leaderboard.csv`` and ``leaderboard.json``.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siuo_task.data import GenItem, SiuoData
from siuo_task.errors import SiuoError
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine, JudgeOutcome, JudgeRequest
from siuo_task.judge.pricing import price_for
from siuo_task.judge.tokens import EXPECTED_COMPLETION_TOKENS, request_tokens
from siuo_task.rejudge import ResponseSet, item_values, match_items, pair_requests, read_responses, summarise
from siuo_task.vlmeval import GEN_PAPER, GEN_SINGLE

Log = Callable[[str], None]
LMMS_SAMPLES = re.compile(r"^(?P<stamp>.+)_samples_(?P<task>siuo_gen(?:_greedy)?)\.jsonl$")
LMMS_OTHER_SAMPLES = re.compile(r"^.+_samples_.+\.jsonl$")
VLMEVAL_GEN_DATASETS = (GEN_PAPER, GEN_SINGLE, "SIUO_GEN")
VLMEVAL_PREDICTIONS = re.compile(r"^(?P<model>.+)_(?P<dataset>" + "|".join(VLMEVAL_GEN_DATASETS) + r")$")
# Files that sit beside inputs and are not inputs: results files, our own outputs, scores.
COMPANIONS = re.compile(
    r"(^\d{8}_\d{6}_results\.json|^results\.json|_siuo_results\.json|_siuo_samples\.jsonl|_score\.csv|_acc\.csv"
    r"|^leaderboard\.(json|csv))$"
)
CANDIDATE_SUFFIXES = (".json", ".jsonl", ".xlsx", ".tsv", ".csv", ".eval")
BATCH_DISCOUNT = 0.5  # the OpenAI Batch API's price relative to online calls
HEADLINE = ("safe_rate", "effective_rate", "safe_effective_rate")


@dataclass
class RunInput:
    """One run to judge: its name, the file holding its responses, and how both were found."""

    name: str
    path: Path
    kind: str
    named_by: str


@dataclass
class Problem:
    """An input that was not judged: a failure (it looked like an input and is broken) or a note."""

    path: Path
    reason: str
    failure: bool = True


@dataclass
class LoadedRun:
    run: RunInput
    pairs: list[tuple[GenItem, ResponseSet]]
    batches: list[list[JudgeRequest]] = field(default_factory=list)


# -- finding inputs ------------------------------------------------------------------------------


def split_spec(spec: str) -> tuple[str | None, Path]:
    """``NAME=PATH`` -> (NAME, PATH); a plain PATH (even one containing '=') -> (None, PATH)."""
    if "=" in spec and not Path(spec).exists():
        name, _, raw = spec.partition("=")
        return name, Path(raw)
    return None, Path(spec)


def discover(specs: list[str], output: Path) -> tuple[list[RunInput], list[Problem]]:
    """Every run under ``specs`` (files or folders, recursively), with unique safe names.

    Folders are searched for known input files; other JSON/JSONL/table files found there are
    reported as notes naming the file. Paths inside ``output`` are never read as inputs.
    """
    runs: list[RunInput] = []
    problems: list[Problem] = []
    for spec in specs:
        override, path = split_spec(spec)
        if not path.exists():
            problems.append(Problem(path, "does not exist"))
            continue
        found, skipped = _inputs_under(path, output.resolve())
        found, older = _newest_per_model(found)
        problems += skipped + older
        if not found and path.is_dir():
            problems.append(Problem(path, "holds no SIUO generation inputs (see the notes above for what was skipped)"))
        for run in found:
            if override:
                run.name, run.named_by = (override if len(found) == 1 else f"{override}-{run.name}"), "NAME=PATH"
            runs.append(run)
    return _unique_names(runs), problems


def _newest_per_model(found: list[RunInput]) -> tuple[list[RunInput], list[Problem]]:
    """One run per (model, kind) under one path: reruns (VLMEvalKit's T<time> folders, lmms-eval's
    timestamps) leave older copies beside the newest; the older ones are noted, not judged."""
    newest: dict[tuple[str, str], RunInput] = {}
    for run in found:
        key = (run.name, run.kind)
        if key not in newest or _age_key(run.path) > _age_key(newest[key].path):
            newest[key] = run
    kept = [run for run in found if newest[(run.name, run.kind)] is run]
    notes = [
        Problem(run.path, f"skipped: an older run of {run.name} (judging {newest[(run.name, run.kind)].path})", False)
        for run in found
        if newest[(run.name, run.kind)] is not run
    ]
    return kept, notes


def _age_key(path: Path) -> tuple[float, str]:
    return path.stat().st_mtime, str(path)


def _inputs_under(path: Path, output: Path) -> tuple[list[RunInput], list[Problem]]:
    if path.is_file():
        return [_explicit_input(path)], []
    found, skipped = [], []
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in CANDIDATE_SUFFIXES):
        if output in file.resolve().parents or COMPANIONS.search(file.name):
            continue
        run_or_problem = _classify(file)
        if isinstance(run_or_problem, RunInput):
            found.append(run_or_problem)
        elif run_or_problem is not None:
            skipped.append(run_or_problem)
    return found, skipped


def _explicit_input(path: Path) -> RunInput:
    """A file named on the command line is an input whatever its name; reading it validates it."""
    classified = _classify(path)
    if isinstance(classified, RunInput):
        return classified
    kind = "VLMEvalKit predictions" if path.suffix in (".xlsx", ".tsv", ".csv") else "responses file"
    return RunInput(_safe(path.stem), path, kind, "file name")


def _classify(file: Path) -> RunInput | Problem | None:
    from siuo_task.adapters.inspect_ai.logs import is_inspect_log

    if is_inspect_log(file):
        return _inspect_input(file)
    lmms = LMMS_SAMPLES.match(file.name)
    if lmms:
        name, named_by = _lmms_eval_name(file, lmms["stamp"])
        return RunInput(name + _protocol_suffix(lmms["task"]), file, f"lmms-eval {lmms['task']} samples", named_by)
    if LMMS_OTHER_SAMPLES.match(file.name):
        return None  # another task's samples (siuo_mcq needs no judge)
    if file.name == "samples.jsonl":
        return RunInput(file.parent.name, file, "siuo-eval samples", "folder name")
    if file.suffix in (".xlsx", ".tsv", ".csv"):
        vlm = VLMEVAL_PREDICTIONS.match(file.stem)
        if vlm:
            name = vlm["model"] + _protocol_suffix(vlm["dataset"])
            return RunInput(name, file, f"VLMEvalKit {vlm['dataset']} predictions", "VLMEvalKit file name")
        return Problem(file, "skipped: not VLMEvalKit predictions of a SIUO generation dataset", failure=False)
    if file.suffix == ".json":
        return _authors_or_note(file)
    return Problem(file, "skipped: not a siuo_gen samples file (<date>_samples_siuo_gen.jsonl)", failure=False)


def _inspect_input(file: Path) -> RunInput | Problem | None:
    """An Inspect log of siuo_gen / siuo_gen_greedy, named by the model Inspect recorded."""
    try:
        from inspect_ai.log import read_eval_log

        header = read_eval_log(str(file), header_only=True)
    except Exception as exc:  # not installed, or a log Inspect cannot read
        return Problem(file, f"could not be read as an Inspect log ({type(exc).__name__}: {exc})")
    task = header.eval.task.rsplit("/", 1)[-1]
    if task not in ("siuo_gen", "siuo_gen_greedy"):
        return None  # another task's log (siuo_mcq needs no judge)
    name = header.eval.model.rsplit("/", 1)[-1] + _protocol_suffix(task)
    return RunInput(name, file, f"Inspect {task} log", "Inspect log model")


def _protocol_suffix(task: str) -> str:
    """Runs of the one-response variants are named apart from the paper protocol's (3 responses)."""
    return {"siuo_gen_greedy": "-greedy", GEN_SINGLE: "-GEN1"}.get(task, "")


def _authors_or_note(file: Path) -> RunInput | Problem:
    try:
        rows = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Problem(file, f"cannot be read as JSON ({exc})")
    if isinstance(rows, list) and rows and all(isinstance(r, dict) and "responses" in r for r in rows):
        return RunInput(file.stem, file, "authors' format", "file name")
    reason = "skipped: not a SIUO input (the authors' format is a JSON list of items with 'responses')"
    return Problem(file, reason, failure=False)


def _lmms_eval_name(samples: Path, stamp: str) -> tuple[str, str]:
    """The model lmms-eval recorded in the results file of the same run, else its folder name."""
    results = samples.with_name(f"{stamp}_results.json")
    try:
        recorded = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return samples.parent.name, "lmms-eval output folder"
    config = recorded.get("config") or {}
    model_path = str(recorded.get("model_name") or _pretrained(str(config.get("model_args") or "")))
    model = str(config.get("model") or "")
    if model_path:
        return Path(model_path.rstrip("/")).name, "lmms-eval model_args"
    return (model or samples.parent.name), "lmms-eval model"


def _pretrained(model_args: str) -> str:
    for part in model_args.split(","):
        key, _, value = part.partition("=")
        if key.strip() in ("pretrained", "model", "model_name", "model_id", "path") and value:
            return value.strip()
    return ""


def _safe(name: str) -> str:
    """A file-system-safe run name: letters, digits, '.', '_', '-' only."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    return cleaned[:100] or "run"


def _unique_names(runs: list[RunInput]) -> list[RunInput]:
    taken: set[str] = set()
    for run in runs:
        base = _safe(run.name)
        name, number = base, 2
        while name.lower() in taken:
            name, number = f"{base}-{number}", number + 1
        taken.add(name.lower())
        run.name = name
    return runs


# -- loading and judging -------------------------------------------------------------------------


def load_runs(runs: list[RunInput], data: SiuoData) -> tuple[list[LoadedRun], list[Problem]]:
    """Read and validate every run; a broken input becomes a Problem and the others go on."""
    loaded, problems = [], []
    for run in runs:
        try:
            pairs = match_items(read_responses(run.path, data), data)
        except SiuoError as exc:
            problems.append(Problem(run.path, str(exc)))
            continue
        loaded.append(LoadedRun(run, pairs, pair_requests(pairs)))
    return loaded, problems


def all_requests(loaded: list[LoadedRun]) -> list[JudgeRequest]:
    return [request for run in loaded for batch in run.batches for request in batch]


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


def estimate(loaded: list[LoadedRun], engine: JudgeEngine, batch: bool) -> list[CostEstimate]:
    """Per-run estimates; a call shared by several runs is counted for the first one."""
    seen: set[str] = set()
    price = price_for(engine.config.model)
    estimates = []
    for run in loaded:
        requests = [request for batch_ in run.batches for request in batch_]
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

    def __init__(self, model: str, discount: float) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._model = model
        self._discount = discount

    def add(self, outcome: JudgeOutcome) -> None:
        self.prompt_tokens += outcome.prompt_tokens
        self.completion_tokens += outcome.completion_tokens

    @property
    def cost_usd(self) -> float | None:
        price = price_for(self._model)
        if price is None:
            return None
        cost = self.prompt_tokens * price["input"] + self.completion_tokens * price["output"]
        return cost / 1_000_000 * self._discount


def judge_loaded(
    loaded: list[LoadedRun], engine: JudgeEngine, on_done: Callable[[JudgeOutcome], None] | None = None
) -> list[list[dict[str, Any]]]:
    """One grade_many over every run's calls (one bound, one cache, coalescing across runs)."""
    started = time.time()
    outcomes = engine.grade_many(all_requests(loaded), on_done)
    window = (started, time.time())
    values, offset = [], 0
    for run in loaded:
        count = sum(len(batch) for batch in run.batches)
        run_outcomes = outcomes[offset : offset + count]
        offset += count
        values.append(item_values(run.pairs, run.batches, run_outcomes, engine.config, window))
    return values


def run_summary(run: LoadedRun, values: list[dict[str, Any]], config: JudgeConfig, batch: str | None) -> dict[str, Any]:
    summary = summarise(values, config, run.run.path)
    summary["run"] = {"name": run.run.name, "kind": run.run.kind, "named_by": run.run.named_by}
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
        rows.append(row)
    return rows


def write_leaderboard(output: Path, rows: list[dict[str, Any]], problems: list[Problem], log: Log) -> list[Path]:
    """``leaderboard.json`` (runs and inputs that failed) and ``leaderboard.csv`` (runs)."""
    json_path, csv_path = output / "leaderboard.json", output / "leaderboard.csv"
    for path in (json_path, csv_path):
        keep_earlier(path, log)
    failed = [{"path": str(p.path), "reason": p.reason} for p in problems if p.failure]
    json_path.write_text(json.dumps({"runs": rows, "failed_inputs": failed}, indent=2), encoding="utf-8")
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        fields = list(rows[0]) if rows else ["run"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return [json_path, csv_path]


def sweep_run_specs(folder: Path) -> Iterator[str] | None:
    """``NAME=DIR/<run>`` for every run of a sweep output folder (one with leaderboard.json),
    so ``siuo-eval report DIR`` reports the whole sweep; None for any other folder."""
    board = folder / "leaderboard.json"
    if not folder.is_dir() or not board.is_file():
        return None
    runs = json.loads(board.read_text(encoding="utf-8")).get("runs", [])
    return (f"{run['run']}={folder / run['run']}" for run in runs if (folder / run["run"] / "results.json").is_file())
