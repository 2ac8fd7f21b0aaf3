"""The task summary lm-eval has no metric row for, written into its results_<date>.json.

lm-eval prints every metric of a task as a table row and expects numbers there. A SIUO task
also has 95% CIs, per-category rates, the judge's identity, the protocol and the judge's usage.
The ``items_scored`` row's aggregation (rank 0, after every rank's values are gathered)
reduces the full per-item values with the reducers ``siuo-eval judge`` uses and keeps the
result; ``install`` patches lm-eval's saving so that it lands in results_<date>.json as
``"siuo": {<task>: {...}}``, the layout the lmms-eval adapter writes, and so that our tasks'
"results" entries hold numbers only.

lm-eval has no plugin entry point: ``install`` runs when our hooks module is imported (lm-eval
imports it while it loads the task YAMLs, before it evaluates or saves anything).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from siuo_task.results import GEN_REDUCERS, MCQ_REDUCERS, RECORD_KEY
from siuo_task.run_end import cli_option, exit_nonzero_if_judge_failed
from siuo_task.summary import finish_task

RESULTS_KEY = "siuo"
_MARK = "_siuo_task_patched"
_LOCK = threading.Lock()
_SUMMARIES: dict[str, dict[str, Any]] = {}
# The tasks whose process_results ran here: their "results" entries are ours to tidy.
_OUR_TASKS: set[str] = set()
# lm-eval's own keys of a task's "results" entry, which are not metric rows.
_NOT_ROWS = frozenset({"alias", "name", "sample_len", "sample_count"})


def note_task(task: str) -> None:
    with _LOCK:
        _OUR_TASKS.add(task)


def _summarise(cells: list[dict[str, Any]], reducers: dict[str, Any]) -> int:
    task = next((cell.get("task") for cell in cells if cell.get("task")), None) or "unknown"
    summary = finish_task(task, cells, reducers, cli_option("--output_path", "--output-path", "-o"))
    with _LOCK:
        _SUMMARIES[task] = summary.to_dict()
    return len(cells)


def items_scored_gen(cells: list[dict[str, Any]]) -> int:
    """Aggregation of a generation task's ``items_scored`` row: the item count; keeps the summary."""
    return _summarise(cells, GEN_REDUCERS)


def items_scored_mcq(cells: list[dict[str, Any]]) -> int:
    """Aggregation of siuo_mcq's ``items_scored`` row: the item count; keeps the summary."""
    return _summarise(cells, MCQ_REDUCERS)


def record_count(records: list[Any]) -> int:
    """Aggregation of the per-item record (lm-eval aggregates every key process_results
    returns; the record is there only to be logged with the sample, and its row is dropped)."""
    return len(records)


def take_summaries(tasks: list[str]) -> dict[str, dict[str, Any]]:
    """The kept summaries of these tasks, removed from the store."""
    with _LOCK:
        return {task: _SUMMARIES.pop(task) for task in tasks if task in _SUMMARIES}


def numeric_rows(task_results: dict[str, Any]) -> None:
    """Leave only numbers in one of our tasks' "results" entries: the record's row goes, and so
    does every "N/A" lm-eval writes as the stderr of a custom aggregation (counts)."""
    for key in list(task_results):
        if key in _NOT_ROWS:
            continue
        name = key.split(",", 1)[0]
        value = task_results[key]
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if name in (RECORD_KEY, f"{RECORD_KEY}_stderr") or not is_number:
            del task_results[key]


def add_summaries(results: dict[str, Any]) -> None:
    """What the patched save does to lm-eval's results dict, in place (so the table lm-eval
    prints after saving shows the same rows)."""
    task_results = results.get("results", {})
    summaries = take_summaries(list(task_results))
    if summaries:
        results[RESULTS_KEY] = {**results.get(RESULTS_KEY, {}), **summaries}
    with _LOCK:
        ours = set(_OUR_TASKS)
    for task, entry in task_results.items():
        if task in ours and isinstance(entry, dict):
            numeric_rows(entry)


def install() -> None:
    """Patch lm-eval (once per process): summaries into the results file, MCQ scoring kept in
    --predict_only. Does nothing when lm-eval is not installed."""
    try:
        from lm_eval.api.task import ConfigurableTask
        from lm_eval.loggers.evaluation_tracker import EvaluationTracker
    except ImportError:
        return
    exit_nonzero_if_judge_failed("lm_eval")
    save = EvaluationTracker.save_results_aggregated
    if not getattr(save, _MARK, False):

        @functools.wraps(save)
        def save_results_aggregated(self: Any, results: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            add_summaries(results)
            return save(self, results, *args, **kwargs)

        setattr(save_results_aggregated, _MARK, True)
        EvaluationTracker.save_results_aggregated = save_results_aggregated  # type: ignore[method-assign]
    override = ConfigurableTask.override_metric
    if not getattr(override, _MARK, False):

        @functools.wraps(override)
        def override_metric(self: Any, metric_name: str) -> None:
            # --predict_only replaces every task's metrics with "bypass". Our multiple-choice
            # tasks need no judge, so they keep their scoring: a generation-only run still
            # reports MCQ accuracy.
            if metric_name == "bypass" and _is_our_mcq(self):
                return
            override(self, metric_name)

        setattr(override_metric, _MARK, True)
        ConfigurableTask.override_metric = override_metric  # type: ignore[method-assign]


def _is_our_mcq(task: Any) -> bool:
    hook = getattr(getattr(task, "config", None), "process_results", None)
    return getattr(hook, "__module__", "") == "siuo_task.adapters.lm_eval.hooks" and getattr(
        hook, "__name__", ""
    ).startswith("process_results_mcq")
