"""Per-category rates, from a run's per-item records."""

from __future__ import annotations

from siuo_task.benchmark.metrics import Rate, rate
from siuo_task.report.view import decisions, task_of
from siuo_task.runs import Run


def category_rate(run: Run, metric: str, category: str) -> Rate | None:
    """From the per-item records when logged (with an interval), else None."""
    task = task_of(run, metric)
    if task is None or not task.records:
        return None
    return rate(decisions(run, metric, category).values())
