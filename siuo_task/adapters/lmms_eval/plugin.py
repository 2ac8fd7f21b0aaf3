"""Makes ``lmms-eval --tasks siuo_gen`` work after ``pip install`` with no --include_path.

lmms-eval has no entry-point group for tasks. It does load the ``lmms_eval.models``
entry-point group when ``lmms_eval.models`` is imported, which happens before the CLI builds
its task index. ``register`` is that entry point: it returns no model manifests and teaches
TaskManager to index our task folder as if it had been passed with --include_path.
"""

from __future__ import annotations

import functools
from typing import Any

from siuo_task.adapters.lmms_eval import tasks_dir
from siuo_task.run_end import exit_nonzero_if_judge_failed

_MARK = "_siuo_task_include_path"


def register() -> list[Any]:
    """Entry point for ``lmms_eval.models``: add our task folder, register no models."""
    from lmms_eval.tasks import TaskManager

    original = TaskManager.initialize_tasks
    if getattr(original, _MARK, False):
        return []

    @functools.wraps(original)
    def initialize_tasks(self: Any, include_path: Any = None, include_defaults: bool = True) -> Any:
        paths = [] if include_path is None else [include_path] if isinstance(include_path, str) else list(include_path)
        ours = str(tasks_dir())
        if ours not in paths:
            # Appended last: lmms-eval lets earlier paths win, so a user's --include_path or a
            # built-in task of the same name is never shadowed by ours.
            paths.append(ours)
        return original(self, include_path=paths, include_defaults=include_defaults)

    setattr(initialize_tasks, _MARK, True)
    TaskManager.initialize_tasks = initialize_tasks  # type: ignore[method-assign]
    # Early, so that it runs after every other exit handler (see siuo_task.run_end).
    exit_nonzero_if_judge_failed("lmms_eval")
    _keep_mcq_scoring_in_predict_only()
    _write_task_summaries_into_results()
    return []


def _keep_mcq_scoring_in_predict_only() -> None:
    """``--predict_only`` replaces every task's metrics with "bypass". Our multiple-choice tasks
    need no judge, so they keep their scoring: a generation-only run still reports MCQ accuracy."""
    from lmms_eval.api.task import ConfigurableTask

    original = ConfigurableTask.override_metric

    def override_metric(self: Any, metric_name: str) -> None:
        if metric_name == "bypass" and _is_our_mcq(self):
            return
        original(self, metric_name)

    ConfigurableTask.override_metric = override_metric  # type: ignore[method-assign]


def _is_our_mcq(task: Any) -> bool:
    hook = getattr(getattr(task, "config", None), "process_results", None)
    module = getattr(hook, "__module__", "")
    return module == "siuo_task.adapters.lmms_eval.hooks" and getattr(hook, "__name__", "").startswith(
        "process_results_mcq"
    )


def _write_task_summaries_into_results() -> None:
    """Add our tasks' summaries (CIs, per-category rates, judge, usage) to results.json as
    ``"siuo": {<task>: {...}}``: lmms-eval has no place for non-numeric task results."""
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    from siuo_task.adapters.lmms_eval.summary import RESULTS_KEY, take_summaries

    original = EvaluationTracker.save_results_aggregated

    def save_results_aggregated(self: Any, results: dict[str, Any], samples: Any, datetime_str: str) -> None:
        summaries = take_summaries(list(results.get("results", {})))
        if summaries:
            results[RESULTS_KEY] = summaries
        for task_results in results.get("results", {}).values():
            _drop_record_entries(task_results)
        original(self, results, samples, datetime_str)

    EvaluationTracker.save_results_aggregated = save_results_aggregated  # type: ignore[method-assign]


def _drop_record_entries(task_results: dict[str, Any]) -> None:
    # process_results returns the per-item record so that lmms-eval logs it with the sample;
    # lmms-eval then also lists it as an empty "metric" ("siuo,none": []), which is no number.
    from siuo_task.results import RECORD_KEY

    names = (RECORD_KEY, f"{RECORD_KEY}_stderr")
    for key in [key for key, value in task_results.items() if key.split(",", 1)[0] in names and value == []]:
        del task_results[key]
