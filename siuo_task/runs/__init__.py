"""Finished runs, read back from any harness's files through the registered readers.

``load_runs(spec)`` gives every judged run at a path (a results file, a log, a folder searched
recursively), each named by the one naming rule; ``NAME=PATH`` names the one run at PATH.
A folder holding several runs gives every run, each named; nothing is picked silently.
"""

from __future__ import annotations

from collections import Counter

from siuo_task.card import TASKS
from siuo_task.errors import DataError
from siuo_task.runs.model import JudgeInfo, Run, TaskRun, judge_info, minority_response_counts, responses_per_item
from siuo_task.runs.readers import Note, listing, results_under, split_spec

REPORTED_TASKS = TASKS


def load_runs(spec: str, notes: list[Note] | None = None) -> list[Run]:
    """Every run at ``PATH`` or the one run at ``NAME=PATH``; files passed over are added to
    ``notes`` when given.

    Raises:
        DataError: when PATH does not exist, holds no SIUO run, or NAME= names a folder of several.
    """
    name, path = split_spec(spec)
    runs, skipped = results_under(path)
    if notes is not None:
        notes.extend(skipped)
    if not runs:
        looked = "; ".join(f"{note.path}: {note.reason}" for note in skipped)
        detail = f" (passed over: {looked})" if looked else ""
        raise DataError(f"no judged SIUO run ({', '.join(TASKS)}) under '{path}'{detail}")
    if name:
        if len(runs) > 1:
            raise DataError(
                f"'{spec}': NAME=PATH names one run, but '{path}' holds {len(runs)}: "
                f"{listing(run.source for run in runs)}; name each results file (NAME=FILE), or pass the folder "
                "without NAME= to report every run"
            )
        runs[0].name = name
    return runs


def load_one_run(spec: str) -> Run:
    """Exactly one run; a folder holding several is an error that lists them."""
    runs = load_runs(spec)
    if len(runs) > 1:
        _, path = split_spec(spec)
        raise DataError(
            f"'{path}' holds {len(runs)} runs: {listing(run.source for run in runs)}; pass one of these results files"
        )
    return runs[0]


def unique_names(runs: list[Run]) -> list[Run]:
    """Give runs that share a name a suffix from their results file, so no two read alike."""
    seen = Counter(run.name for run in runs)
    for run in runs:
        if seen[run.name] > 1:
            run.name = f"{run.name} [{run.source.parent.name}/{run.source.name}]"
    return runs


__all__ = [
    "REPORTED_TASKS",
    "JudgeInfo",
    "Note",
    "Run",
    "TaskRun",
    "judge_info",
    "load_one_run",
    "load_runs",
    "minority_response_counts",
    "responses_per_item",
    "unique_names",
]
