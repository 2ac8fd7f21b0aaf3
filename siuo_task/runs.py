"""Finished runs, read back from disk for reports: lmms-eval output folders or results files
from our tasks, ``siuo-eval judge`` output folders (one run, or a sweep of several), and the
files our VLMEvalKit datasets write.

A run gives its headline metrics (from the results file), the files it was read from, its model
as the harness recorded it, its item count and, when the samples were logged, the per-item
records that paired comparisons, per-category intervals and item views need.

A folder holding several runs gives every run, each named; nothing is picked silently.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siuo_task.adapters.inspect_ai.logs import is_inspect_source, load_inspect_run
from siuo_task.errors import DataError
from siuo_task.results import RECORD_KEY, describe_protocol

GEN_TASKS = ("siuo_gen", "siuo_gen_greedy")
MCQ_TASK = "siuo_mcq"
BENCHMARK_ITEMS = 167
REPORTED_TASKS = (*GEN_TASKS, MCQ_TASK)
VLMEVAL_DATASETS = ("SafeInputsUnsafeOutput_GEN3", "SafeInputsUnsafeOutput_GEN1", "SafeInputsUnsafeOutput_MCQ")


@dataclass
class TaskRun:
    """One task's metrics (names without lmms-eval's ',none' suffix) and per-item records."""

    task: str
    metrics: dict[str, Any]
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    samples_file: Path | None = None  # where the per-item records were (or would have been) read
    items: int | None = None  # items scored, as the harness recorded it

    @property
    def item_count(self) -> int | None:
        return self.items if self.items is not None else (len(self.records) or None)

    @property
    def partial(self) -> bool:
        count = self.item_count
        return count is not None and count < BENCHMARK_ITEMS


@dataclass
class Run:
    """One model's evaluation: its open-ended and multiple-choice parts, either may be absent."""

    name: str
    source: Path
    gen: TaskRun | None
    mcq: TaskRun | None
    harness: str = ""
    model: str = ""  # the model as the harness's own metadata names it
    judge_meta: dict[str, Any] = field(default_factory=dict)

    def tasks(self) -> list[TaskRun]:
        return [task for task in (self.gen, self.mcq) if task is not None]

    @property
    def partial(self) -> bool:
        return any(task.partial for task in self.tasks())

    def files_read(self) -> list[Path]:
        samples = [t.samples_file for t in self.tasks() if t.samples_file is not None and t.records]
        return [self.source, *samples]


@dataclass(frozen=True, slots=True)
class JudgeInfo:
    """Who judged a run and under which protocol: the one place reports read this from."""

    model: str
    endpoint: str
    prompt_sha256: str
    protocol: str
    cost_usd: float | None
    errors: Any


def judge_info(run: Run) -> JudgeInfo | None:
    """Judge identity and protocol of a run's open-ended part, wherever the harness put them
    (the metric rows, or a separate ``judge`` section); the protocol line is built once per run
    from the per-item records when they were logged."""
    if run.gen is None:
        return None
    metrics, meta = run.gen.metrics, run.judge_meta
    model = meta.get("models_returned") or metrics.get("judge_model") or ""
    requested = meta.get("model_requested") or metrics.get("judge_model_requested") or ""
    return JudgeInfo(
        model=str(model or requested or "unknown"),
        endpoint=str(meta.get("endpoint") or metrics.get("judge_endpoint") or "unknown"),
        prompt_sha256=str(meta.get("prompt_sha256") or metrics.get("judge_prompt_sha256") or ""),
        protocol=run_protocol(run),
        cost_usd=metrics.get("judge_cost_usd", (meta.get("usage") or {}).get("cost_usd")),
        errors=metrics.get("judge_errors", "unknown"),
    )


def responses_per_item(run: Run) -> dict[int, int]:
    """How many responses each logged item has (empty without per-item records)."""
    if run.gen is None:
        return {}
    return {qid: len(record.get("responses") or []) for qid, record in run.gen.records.items()}


def run_protocol(run: Run) -> str:
    if run.gen is None:
        return ""
    recorded = run.gen.metrics.get("protocol")
    counts = responses_per_item(run)
    if not counts:
        return str(recorded or "unknown (no per-item records)")
    version = run.judge_meta.get("prompt_version") or _prompt_version(recorded)
    return f"{run.gen.task}: {describe_protocol(version, counts)}"


def _prompt_version(recorded: Any) -> str:
    if isinstance(recorded, str):
        versions = sorted(set(re.findall(r"([\w.-]+);", recorded)))
        if versions:
            return ", ".join(versions)
    return "unknown prompts"


def minority_response_counts(run: Run) -> dict[int, list[int]]:
    """Items whose response count differs from the run's most common one: {count: [items]}."""
    counts = responses_per_item(run)
    if len(set(counts.values())) < 2:
        return {}
    usual = Counter(counts.values()).most_common(1)[0][0]
    odd: dict[int, list[int]] = {}
    for qid, count in sorted(counts.items()):
        if count != usual:
            odd.setdefault(count, []).append(qid)
    return odd


# -- finding and loading ----------------------------------------------------------------------


def find_results(path: Path) -> list[Path]:
    """Every SIUO results file at ``path`` (a file, or a folder searched recursively).

    Raises:
        DataError: naming the path when it does not exist or holds no SIUO results file.
    """
    return scan_results(path)[0]


def scan_results(path: Path) -> tuple[list[Path], list[Path]]:
    """(SIUO results files, other results files) at ``path``; a folder may hold other
    benchmarks' lmms-eval results beside ours, which are listed, not read.

    Raises:
        DataError: naming the path when it does not exist or holds no SIUO results file.
    """
    if path.is_file():
        return [path], []
    if not path.is_dir():
        raise DataError(f"results path '{path}' does not exist")
    found = sorted({*path.rglob("*_results.json"), *path.rglob("results.json")})
    ours = [file for file in found if _is_siuo_results(file)]
    if not ours:
        others = f" (found only results of other tasks: {listing(found)})" if found else ""
        raise DataError(f"no results.json or *_results.json of {', '.join(REPORTED_TASKS)} under '{path}'{others}")
    return ours, [file for file in found if file not in ours]


def _is_siuo_results(file: Path) -> bool:
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return True  # read it, so the error names the file
    if not isinstance(results, dict):
        return False
    if isinstance(results.get("results"), dict):
        return any(task in results["results"] for task in (*GEN_TASKS, MCQ_TASK))
    return "safe_rate" in results or "accuracy" in results


def split_spec(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` into (NAME, PATH); a bare PATH (even one holding '=') gives ("", PATH)."""
    if "=" in spec and not Path(spec).exists():
        name, _, raw = spec.partition("=")
        return name, Path(raw)
    return "", Path(spec)


def load_runs(spec: str) -> list[Run]:
    """Every run at ``PATH`` or the one run at ``NAME=PATH``.

    Raises:
        DataError: when NAME= names a folder of several runs, or nothing SIUO is found.
    """
    name, path = split_spec(spec)
    if is_inspect_source(path):
        run = load_inspect_run(path)
        run.name = name or run.name
        return [run]
    files = find_results(path)
    if name and len(files) > 1:
        raise DataError(
            f"'{spec}': NAME=PATH names one run, but '{path}' holds {len(files)}: {listing(files)}; "
            "name each results file (NAME=FILE), or pass the folder without NAME= to report every run"
        )
    runs = [load_results_file(file) for file in files]
    if name:
        runs[0].name = name
    return runs


def load_one_run(spec: str) -> Run:
    """Exactly one run; a folder holding several is an error that lists them."""
    _, path = split_spec(spec)
    if is_inspect_source(path):
        return load_runs(spec)[0]
    files = find_results(path)
    if len(files) > 1:
        raise DataError(f"'{path}' holds {len(files)} runs: {listing(files)}; pass one of these results files")
    return load_runs(spec)[0]


def listing(files: list[Path]) -> str:
    return "; ".join(str(file) for file in files)


def unique_names(runs: list[Run]) -> list[Run]:
    """Give runs that share a name a suffix from their results file, so no two read alike."""
    seen = Counter(run.name for run in runs)
    for run in runs:
        if seen[run.name] > 1:
            run.name = f"{run.name} [{run.source.parent.name}/{run.source.name}]"
    return runs


def load_results_file(results_file: Path) -> Run:
    try:
        results = json.loads(results_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"'{results_file}' is not JSON ({exc})") from exc
    if not isinstance(results, dict):
        raise DataError(f"'{results_file}' is neither lmms-eval results nor siuo-eval / VLMEvalKit SIUO results")
    if "results" in results:
        run = _from_lmms_eval(results, results_file)
    elif "safe_rate" in results or "accuracy" in results:
        run = _from_siuo_results(results, results_file)
    else:
        raise DataError(f"'{results_file}' is neither lmms-eval results nor siuo-eval / VLMEvalKit SIUO results")
    if run.gen is None and run.mcq is None:
        raise DataError(f"'{results_file}' holds no SIUO task results (looked for {', '.join((*GEN_TASKS, MCQ_TASK))})")
    return run


def _strip_filters(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key.split(",", 1)[0]: value for key, value in metrics.items() if key != "alias"}


def lmms_eval_task_values(results: dict[str, Any], task: str) -> dict[str, Any]:
    """Every value of one task in an lmms-eval results.json, by name: the printed metric rows
    and the task summary our tasks add under "siuo" (CIs, per-category rates, judge identity,
    protocol, usage). Files written before that summary existed had all of it as metric rows."""
    summary = results.get("siuo", {}).get(task, {})
    return {**summary, **_strip_filters(results["results"][task])}


def _records(path: Path) -> dict[int, dict[str, Any]]:
    if not path.is_file():
        return {}
    records = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line).get(RECORD_KEY)
        except json.JSONDecodeError as exc:
            raise DataError(f"'{path}' line {number} is not JSON ({exc})") from exc
        if record is not None:
            records[record["question_id"]] = record
    return records


def _lmms_eval_model(results: dict[str, Any]) -> tuple[str, str]:
    """(short name, full description) from lmms-eval's own metadata."""
    config = results.get("config") or {}
    model_class = str(config.get("model") or results.get("model_source") or "unknown model")
    args = str(config.get("model_args") or "")
    pretrained = str(results.get("model_name") or "")
    short = Path(pretrained).name if pretrained else model_class
    return short or model_class, f"{model_class} ({args})" if args else model_class


def _from_lmms_eval(results: dict[str, Any], results_file: Path) -> Run:
    stamp = results_file.name.removesuffix("_results.json")
    tasks = results["results"]
    n_samples = (results.get("config") or {}).get("n-samples") or results.get("n-samples") or {}

    def task_run(task: str) -> TaskRun:
        samples = results_file.parent / f"{stamp}_samples_{task}.jsonl"
        items = (n_samples.get(task) or {}).get("effective")
        return TaskRun(task, lmms_eval_task_values(results, task), _records(samples), samples, items)

    gen_task = next((task for task in GEN_TASKS if task in tasks), None)
    short, model = _lmms_eval_model(results)
    return Run(
        name=short,
        source=results_file,
        gen=task_run(gen_task) if gen_task else None,
        mcq=task_run(MCQ_TASK) if MCQ_TASK in tasks else None,
        harness="lmms-eval",
        model=model,
    )


def _vlmeval_model(stem: str) -> str:
    for dataset in VLMEVAL_DATASETS:
        if stem.endswith(f"_{dataset}"):
            return stem.removesuffix(f"_{dataset}")
    return stem


def _from_siuo_results(results: dict[str, Any], results_file: Path) -> Run:
    """``siuo-eval judge`` output (results.json + samples.jsonl) or the files our VLMEvalKit
    datasets write beside the predictions (<stem>_siuo_results.json + <stem>_siuo_samples.jsonl)."""
    metrics = {key: value for key, value in results.items() if not isinstance(value, dict)}
    samples = results_file.with_name(results_file.name.removesuffix("results.json") + "samples.jsonl")
    vlmeval = results_file.name.endswith("_siuo_results.json")
    records = _records(samples)
    items = results.get("n_items")
    judge = results.get("judge")
    meta = {**(judge if isinstance(judge, dict) else {}), "usage": results.get("usage") or {}}
    source_input = str(results.get("input") or "unknown input")
    if vlmeval:
        name = _vlmeval_model(results_file.name.removesuffix("_siuo_results.json"))
        harness, model = "VLMEvalKit", f"{name} (from the file name; predictions {source_input})"
    else:
        name, harness, model = results_file.parent.name, "siuo-eval judge", f"responses from {source_input}"
    task = TaskRun(harness, metrics, records, samples, items if isinstance(items, int) else None)
    if "safe_rate" in results:
        return Run(name, results_file, task, None, harness, model, meta)
    return Run(name, results_file, None, task, harness, model, meta)
