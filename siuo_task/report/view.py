"""How the report reads a run: the name it shows, its item counts, and for each metric the task
and the per-item decisions behind it. Every read of a per-item record's decision is here."""

from __future__ import annotations

from collections.abc import Sequence

from siuo_task.benchmark.card import BENCHMARK_ITEMS
from siuo_task.runs import Run, TaskRun

GEN_LABELS = {"safe": "Safe", "effective": "Effective", "safe_effective": "Safe & Effective"}
MCQ_LABELS = {"accuracy": "MCQ accuracy", "circular_accuracy": "MCQ circular accuracy"}
METRIC_LABELS = {**GEN_LABELS, **MCQ_LABELS}
ONE_RESPONSE = "1 response/item"
NOT_SAMPLED = "NOT SAMPLED"


def label(run: Run) -> str:
    """A run's name as every table and figure shows it: a one-response run and a partial run
    say so, so neither passes for the paper's 3-response protocol on all items."""
    shown = f"{run.name} ({ONE_RESPONSE})" if run.one_response else run.name
    if run.not_sampled:
        shown += f" ({NOT_SAMPLED})"
    if not run.partial:
        return shown
    return f"{shown} (PARTIAL: {items_cell(run)} of {BENCHMARK_ITEMS} items)"


def items_cell(run: Run) -> str:
    counts = {task.task: task.item_count for task in run.tasks()}
    shown = {str(count) if count is not None else "unknown" for count in counts.values()}
    if len(shown) == 1:
        return shown.pop()
    return ", ".join(f"{task} {count if count is not None else 'unknown'}" for task, count in counts.items())


def has_circular(runs: Sequence[Run]) -> bool:
    return any(run.circular is not None for run in runs)


def task_of(run: Run, metric: str) -> TaskRun | None:
    """The part of a run a metric belongs to: MCQ for accuracy, circular MCQ for circular
    accuracy, else the open-ended task."""
    return {"accuracy": run.mcq, "circular_accuracy": run.circular}.get(metric, run.gen)


def lacks_records(run: Run, metric: str) -> bool:
    task = task_of(run, metric)
    return task is not None and not task.records


def decisions(run: Run, metric: str, category: str | None = None) -> dict[int, bool | None]:
    """Each logged item's decision for ``metric`` (None: no decision, e.g. every judge call
    failed), of one category when given; empty without per-item records."""
    task = task_of(run, metric)
    if task is None:
        return {}
    # A multiple-choice record's decision is whether it was answered right, whatever the metric's name.
    return {
        qid: record.decision(metric)
        for qid, record in task.item_records.items()
        if category is None or record.category == category
    }


def missing_records_note(runs: Sequence[Run], metric: str | None = None) -> str:
    """Which runs have no per-item records (for ``metric``'s task, or any task) and why."""
    lacking = []
    for run in runs:
        tasks = [task_of(run, metric)] if metric else run.tasks()
        for task in tasks:
            if task is not None and not task.records:
                lacking.append(f"{label(run)} ({task.task}: no per-item records at {task.samples_file})")
    if not lacking:
        return ""
    return (
        f"Left out, no per-item records: {'; '.join(lacking)}. Per-category intervals, counts and paired "
        "comparisons need them: rerun lmms-eval with --log_samples, or keep samples.jsonl beside results.json."
    )
