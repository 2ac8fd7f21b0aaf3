"""The task summary lm-eval has no metric row for, written into its results_<date>.json.

lm-eval prints every metric of a task as a table row and expects numbers there. A SIUO task
also has 95% CIs, per-category rates, the judge's identity, the protocol and the judge's usage.
The ``items_scored`` row's aggregation (rank 0, after every rank's values are gathered)
reduces the full per-item values with the reducers ``siuo-eval judge`` uses; its count carries
the summary in the run's results (siuo_task.harness.task_hooks). ``install`` patches lm-eval's saving
so that it lands in results_<date>.json as ``"siuo": {<task>: {...}}``, the layout the
lmms-eval adapter writes, and so that our tasks' "results" entries hold numbers only.

lm-eval has no plugin entry point: ``install`` runs when our hooks module is imported (lm-eval
imports it while it loads the task YAMLs, before it evaluates or saves anything).
"""

from __future__ import annotations

from typing import Any

from siuo_task.harness.api import GEN_REDUCERS, MCQ_REDUCERS, RECORD_KEY, cli_option, exit_nonzero_if_judge_failed
from siuo_task.harness.task_hooks import (
    ItemCount,
    add_summaries,
    items_scored,
    keep_mcq_scoring_in_predict_only,
    patch_save,
)
from siuo_task.harness.task_hooks import record_count as record_count

# lm-eval's own keys of a task's "results" entry, which are not metric rows.
_NOT_ROWS = frozenset({"alias", "name", "sample_len", "sample_count"})


def _output() -> str | None:
    return cli_option("--output_path", "--output-path", "-o")


def items_scored_gen(cells: list[dict[str, Any]]) -> ItemCount:
    """Aggregation of a generation task's ``items_scored`` row: the item count, carrying the summary."""
    return items_scored(cells, GEN_REDUCERS, _output())


def items_scored_mcq(cells: list[dict[str, Any]]) -> ItemCount:
    """Aggregation of siuo_mcq's ``items_scored`` row: the item count, carrying the summary."""
    return items_scored(cells, MCQ_REDUCERS, _output())


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


def tidy_results(results: dict[str, Any]) -> None:
    """What the patched save does to lm-eval's results dict, in place (so the table lm-eval
    prints after saving shows the same rows): the summaries under "siuo", our tasks' entries
    (those with a row of ours, e.g. the record's) numeric."""
    task_results = results.get("results", {})
    for task in add_summaries(results):
        numeric_rows(task_results[task])


def install() -> None:
    """Patch lm-eval (once per class): summaries into the results file, MCQ scoring kept in
    --predict_only. Does nothing when lm-eval is not installed."""
    try:
        from lm_eval.api.task import ConfigurableTask
        from lm_eval.loggers.evaluation_tracker import EvaluationTracker
    except ImportError:
        return
    exit_nonzero_if_judge_failed("lm_eval")
    patch_save(EvaluationTracker, tidy_results)
    keep_mcq_scoring_in_predict_only(ConfigurableTask, "siuo_task.adapters.lm_eval.hooks")
