"""The task summary lmms-eval has no metric row for, written into its results.json.

lmms-eval prints every metric row and expects numbers there. A SIUO task also has 95% CIs,
per-category rates, the judge's identity, the protocol and the judge's usage. The
``items_scored`` row's aggregation (rank 0, after every rank's values are gathered) reduces the
full per-item values with the same reducers ``siuo-eval judge`` uses and keeps the result here;
the plugin adds them to results.json as ``"siuo": {<task>: {...}}`` when lmms-eval saves it.
"""

from __future__ import annotations

import atexit
import sys
import threading
from typing import Any

from siuo_task.results import GEN_REDUCERS, MCQ_REDUCERS, reduce_values

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
    summary = {**reduce_values(cells, reducers), "n_items": len(cells)}
    with _LOCK:
        _SUMMARIES[task] = summary
    warning = judge_error_warning(task, [cell["judge_outcomes"] for cell in cells if "judge_outcomes" in cell])
    if warning:
        # At exit, so that it is the last thing the run prints (after lmms-eval's table).
        atexit.register(_print_last, warning)
    return len(cells)


def _print_last(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except ValueError:  # sys.stderr was replaced and closed (e.g. captured by a test runner)
        print(text, file=sys.__stderr__, flush=True)


def judge_error_warning(task: str, per_item: list[dict[str, Any]]) -> str | None:
    """A loud warning when judge calls failed: the count and the first cause; None when none."""
    errors = sum(item["errors"] for item in per_item)
    if not errors:
        return None
    calls = sum(item["calls"] for item in per_item)
    first = next(item["first_error"] for item in per_item if item["first_error"])
    rule = "!" * 78
    if errors == calls:
        headline = f"SIUO {task}: EVERY judge call failed ({errors} of {calls}); its safety scores are MEANINGLESS."
    else:
        headline = f"SIUO {task}: {errors} of {calls} judge calls failed; those votes are missing from the rates."
    advice = (
        "Check the judge with `siuo-eval check`, then rejudge the logged samples with "
        "`siuo-eval judge <samples .jsonl> --output DIR` (failed calls are not cached)."
    )
    return f"\n{rule}\n{headline}\nFirst cause: {first}\n{advice}\n{rule}"


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
