"""The task summary lmms-eval has no metric row for, written into its results.json.

lmms-eval prints every metric row and expects numbers there. A SIUO task also has 95% CIs,
per-category rates, the judge's identity, the protocol and the judge's usage. The
``items_scored`` row's aggregation (rank 0, after every rank's values are gathered) reduces the
full per-item values with the same reducers ``siuo-eval judge`` uses; its count carries the
summary in the run's results (siuo_task.harness.task_hooks), and the plugin moves it to results.json
as ``"siuo": {<task>: {...}}`` when lmms-eval saves it.
"""

from __future__ import annotations

from typing import Any

from siuo_task.harness.api import GEN_REDUCERS, MCQ_REDUCERS, cli_option
from siuo_task.harness.task_hooks import ItemCount, items_scored


def current_task() -> str | None:
    """The lmms-eval task whose results are being processed (lmms-eval sets it for judges)."""
    try:
        from lmms_eval.models.model_utils import usage_metrics
    except ImportError:
        return None
    task = getattr(usage_metrics, "_CURRENT_TASK_CONTEXT", None)
    return task if isinstance(task, str) else None


def _output() -> str | None:
    return cli_option("--output_path", "--output-path")


def items_scored_gen(cells: list[dict[str, Any]]) -> ItemCount:
    """Aggregation of siuo_gen's ``items_scored`` row: the item count, carrying the summary."""
    return items_scored(cells, GEN_REDUCERS, _output())


def items_scored_mcq(cells: list[dict[str, Any]]) -> ItemCount:
    """Aggregation of siuo_mcq's ``items_scored`` row: the item count, carrying the summary."""
    return items_scored(cells, MCQ_REDUCERS, _output())
