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
from siuo_task.harness.api import RECORD_KEY, TASKS, exit_nonzero_if_judge_failed, task_finished, task_started
from siuo_task.harness.task_hooks import add_summaries, keep_mcq_scoring_in_predict_only, patch_save

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
        # Here, not at import: lmms_eval.evaluator is still being imported when register runs.
        _watch_our_tasks()
        return original(self, include_path=paths, include_defaults=include_defaults)

    setattr(initialize_tasks, _MARK, True)
    TaskManager.initialize_tasks = initialize_tasks  # type: ignore[method-assign]
    # Early, so that it runs after every other exit handler (see siuo_task.harness.run_end).
    exit_nonzero_if_judge_failed("lmms_eval")
    from lmms_eval.api.task import ConfigurableTask
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    keep_mcq_scoring_in_predict_only(ConfigurableTask, "siuo_task.adapters.lmms_eval.hooks")
    patch_save(EvaluationTracker, _before_save)
    return []


def _watch_our_tasks() -> None:
    """lmms-eval's CLI logs an exception raised while it evaluates or saves, and exits 0 (a
    missing dependency, an output folder it cannot write): our tasks count as begun when
    ``simple_evaluate`` is called with them and as finished once their results and samples are
    saved (or ``simple_evaluate`` returned on a rank that saves nothing), so that the CLI ends
    non-zero otherwise (siuo_task.harness.run_end). Patches once."""
    from lmms_eval import evaluator
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    simple_evaluate = evaluator.simple_evaluate
    if getattr(simple_evaluate, _MARK, False):
        return

    @functools.wraps(simple_evaluate)
    def evaluate(*args: Any, **kwargs: Any) -> Any:
        ours = [task for task in kwargs.get("tasks") or [] if isinstance(task, str) and task in TASKS]
        task_started("lmms-eval", ours)
        results = simple_evaluate(*args, **kwargs)
        if results is None:  # not the rank that writes the files
            task_finished(ours)
        return results

    save_aggregated = EvaluationTracker.save_results_aggregated
    save_samples = EvaluationTracker.save_results_samples

    @functools.wraps(save_aggregated)
    def save_results_aggregated(self: Any, results: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        saved = save_aggregated(self, results, *args, **kwargs)
        samples = kwargs["samples"] if "samples" in kwargs else args[0] if args else None
        if samples is None:  # no --log_samples: this was the last file to write
            task_finished(list(results.get("configs", {})))
        return saved

    @functools.wraps(save_samples)
    def save_results_samples(self: Any, task_name: str, samples: Any) -> Any:
        saved = save_samples(self, task_name=task_name, samples=samples)
        task_finished([task_name])
        return saved

    for function in (evaluate, save_results_aggregated, save_results_samples):
        setattr(function, _MARK, True)
    evaluator.simple_evaluate = evaluate
    EvaluationTracker.save_results_aggregated = save_results_aggregated  # type: ignore[method-assign]
    EvaluationTracker.save_results_samples = save_results_samples  # type: ignore[method-assign]


def _before_save(results: dict[str, Any]) -> None:
    """Our tasks' summaries (CIs, per-category rates, judge, usage) into results.json as
    ``"siuo": {<task>: {...}}`` (lmms-eval has no place for non-numeric task results), and no
    non-numeric entry of ours left under "results"."""
    add_summaries(results)
    for task_results in results.get("results", {}).values():
        _drop_record_entries(task_results)


def _drop_record_entries(task_results: dict[str, Any]) -> None:
    # process_results returns the per-item record so that lmms-eval logs it with the sample;
    # lmms-eval then also lists it as an empty "metric" ("siuo,none": []), which is no number.
    names = (RECORD_KEY, f"{RECORD_KEY}_stderr")
    for key in [key for key, value in task_results.items() if key.split(",", 1)[0] in names and value == []]:
        del task_results[key]
