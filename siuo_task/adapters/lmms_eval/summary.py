"""The task summary lmms-eval has no metric row for, written into its results.json.

lmms-eval prints every metric row and expects numbers there. A SIUO task also has 95% CIs,
per-category rates, the judge's identity, the protocol and the judge's usage. The
``items_scored`` row's aggregation (rank 0, after every rank's values are gathered) reduces the
full per-item values with the same reducers ``siuo-eval judge`` uses and keeps the result here;
the plugin adds them to results.json as ``"siuo": {<task>: {...}}`` when lmms-eval saves it.
"""

from __future__ import annotations

import threading
from typing import Any

from siuo_task.results import GEN_REDUCERS, MCQ_REDUCERS
from siuo_task.run_end import cli_option
from siuo_task.summary import finish_task

RESULTS_KEY = "siuo"
_LOCK = threading.Lock()
_SUMMARIES: dict[str, dict[str, Any]] = {}


def current_task() -> str | None:
    """The lmms-eval task whose results are being processed (lmms-eval sets it for judges)."""
    try:
        from lmms_eval.models.model_utils import usage_metrics
    except ImportError:
        return None
    task = getattr(usage_metrics, "_CURRENT_TASK_CONTEXT", None)
    return task if isinstance(task, str) else None


def _summarise(cells: list[dict[str, Any]], reducers: dict[str, Any]) -> int:
    task = next((cell.get("task") for cell in cells if cell.get("task")), None) or "unknown"
    summary = finish_task(task, cells, reducers, cli_option("--output_path", "--output-path"))
    with _LOCK:
        _SUMMARIES[task] = summary.to_dict()
    return len(cells)


def items_scored_gen(cells: list[dict[str, Any]]) -> int:
    """Aggregation of siuo_gen's ``items_scored`` row: the item count; keeps the summary."""
    return _summarise(cells, GEN_REDUCERS)


def items_scored_mcq(cells: list[dict[str, Any]]) -> int:
    """Aggregation of siuo_mcq's ``items_scored`` row: the item count; keeps the summary."""
    return _summarise(cells, MCQ_REDUCERS)


def take_summaries(tasks: list[str]) -> dict[str, dict[str, Any]]:
    """The kept summaries of these tasks, removed from the store."""
    with _LOCK:
        return {task: _SUMMARIES.pop(task) for task in tasks if task in _SUMMARIES}
