"""Finished runs, read back from disk for reports: lmms-eval output folders or results files
from our tasks, and ``siuo-eval judge`` output folders.

A run gives its headline metrics (from results.json) and, when the samples were logged, the
per-item records that paired comparisons, per-category intervals and item views need.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siuo_task.adapters.inspect_ai.logs import is_inspect_source, load_inspect_run
from siuo_task.errors import DataError
from siuo_task.results import RECORD_KEY

GEN_TASKS = ("siuo_gen", "siuo_gen_greedy")
MCQ_TASK = "siuo_mcq"


@dataclass
class TaskRun:
    """One task's metrics (names without lmms-eval's ',none' suffix) and per-item records."""

    task: str
    metrics: dict[str, Any]
    records: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Run:
    """One model's evaluation: its open-ended and multiple-choice parts, either may be absent."""

    name: str
    source: Path
    gen: TaskRun | None
    mcq: TaskRun | None


def load_run(spec: str) -> Run:
    """Load ``PATH`` or ``NAME=PATH`` (a results file or a folder holding one, or Inspect logs).

    Raises:
        DataError: naming the path when no SIUO results are found there.
    """
    name, _, raw = spec.rpartition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
    path = Path(raw)
    if is_inspect_source(path):
        run = load_inspect_run(path)
        run.name = name or run.name
        return run
    results_file = _find_results(path)
    results = json.loads(results_file.read_text(encoding="utf-8"))
    if "results" in results:
        run = _from_lmms_eval(results, results_file)
    elif "safe_rate" in results or "accuracy" in results:
        run = _from_siuo_results(results, results_file)
    else:
        raise DataError(f"'{results_file}' is neither lmms-eval results nor siuo-eval / VLMEvalKit SIUO results")
    if name:
        run.name = name
    if run.gen is None and run.mcq is None:
        raise DataError(f"'{results_file}' holds no SIUO task results (looked for {', '.join((*GEN_TASKS, MCQ_TASK))})")
    return run


def _find_results(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"results path '{path}' does not exist")
    candidates = sorted(path.rglob("*_results.json")) or sorted(path.rglob("results.json"))
    candidates = [c for c in candidates if not c.name.endswith("_siuo_results.json")] or candidates
    if not candidates:
        raise DataError(f"no results.json or *_results.json under '{path}'")
    return candidates[-1]


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
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line).get(RECORD_KEY)
            if record is not None:
                records[record["question_id"]] = record
    return records


def _from_lmms_eval(results: dict[str, Any], results_file: Path) -> Run:
    stamp = results_file.name.removesuffix("_results.json")
    tasks = results["results"]

    def task_run(task: str) -> TaskRun:
        samples = results_file.parent / f"{stamp}_samples_{task}.jsonl"
        return TaskRun(task, lmms_eval_task_values(results, task), _records(samples))

    gen_task = next((task for task in GEN_TASKS if task in tasks), None)
    name = str(results.get("model_name") or results_file.parent.name)
    return Run(
        name=Path(name).name or name,
        source=results_file,
        gen=task_run(gen_task) if gen_task else None,
        mcq=task_run(MCQ_TASK) if MCQ_TASK in tasks else None,
    )


def _from_siuo_results(results: dict[str, Any], results_file: Path) -> Run:
    """``siuo-eval judge`` output (results.json + samples.jsonl) or the files our VLMEvalKit
    datasets write beside the predictions (<stem>_siuo_results.json + <stem>_siuo_samples.jsonl)."""
    metrics = {key: value for key, value in results.items() if not isinstance(value, dict)}
    samples = results_file.with_name(results_file.name.removesuffix("results.json") + "samples.jsonl")
    vlmeval = results_file.name.endswith("_siuo_results.json")
    name = results_file.name.removesuffix("_siuo_results.json") if vlmeval else results_file.parent.name
    if "safe_rate" in results:
        gen = TaskRun("VLMEvalKit" if vlmeval else "siuo-eval judge", metrics, _records(samples))
        return Run(name=name, source=results_file, gen=gen, mcq=None)
    return Run(name=name, source=results_file, gen=None, mcq=TaskRun("VLMEvalKit", metrics, _records(samples)))
