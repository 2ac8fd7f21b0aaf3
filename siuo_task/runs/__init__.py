"""Finished runs, read back from any harness's files through the registered readers.

``find_results(specs)`` gives every judged run at the given paths (results files, logs,
folders searched recursively) and ``find_responses(specs)`` every run's responses, under the
same rules (``siuo_task.runs.find``): one naming rule, ``NAME=PATH``, the newest of reruns by
the harness's stamp, a judged-later run joined to its source. ``load_runs(spec)`` and
``load_one_run(spec)`` read one path.
"""

from __future__ import annotations

from siuo_task.benchmark.card import TASKS
from siuo_task.errors import DataError
from siuo_task.runs.files import (
    ResponseSet,
    flat_responses,
    item_for_prompt,
    item_for_question,
    numbered_lines,
    read_each,
    read_records,
    record_responses,
    response_set,
)
from siuo_task.runs.find import Finding, describe, find_responses, find_results, generation_only, unique_names
from siuo_task.runs.harness_files import FileNaming, HarnessFilesReader, load_object, task_parts
from siuo_task.runs.model import JudgeInfo, Run, TaskRun, judge_info, minority_response_counts, responses_per_item
from siuo_task.runs.readers import Note, ResponsesFile, listing, model_from_args, short_model, split_spec

REPORTED_TASKS = TASKS


def load_runs(spec: str, notes: list[Note] | None = None) -> list[Run]:
    """Every run at ``PATH`` or the one run at ``NAME=PATH`` (``find_results`` of one path);
    notes on the files passed over or left out are added to ``notes`` when given.

    Raises:
        DataError: when PATH does not exist, holds no SIUO run, or NAME= names a folder of several.
    """
    finding = find_results([spec])
    if notes is not None:
        notes.extend(finding.notes)
    return finding.runs


def load_one_run(spec: str) -> Run:
    """Exactly one run; a folder holding several is an error that lists them, and a run whose
    open-ended part is generation only says to judge it first."""
    notes: list[Note] = []
    runs = load_runs(spec, notes)
    if len(runs) > 1:
        _, path = split_spec(spec)
        raise DataError(
            f"'{path}' holds {len(runs)} runs: {listing(run.source for run in runs)}; pass one of these results files"
        )
    unjudged = [note for note in notes if note.reason.startswith("generation only")]
    if runs[0].gen is None and unjudged:
        raise DataError(f"'{unjudged[0].path}' is {unjudged[0].reason}")
    return runs[0]


# Besides finding runs: what a harness adapter's reader (``ResponsesFile``) is built from.
__all__ = [
    "REPORTED_TASKS",
    "FileNaming",
    "Finding",
    "HarnessFilesReader",
    "JudgeInfo",
    "Note",
    "ResponseSet",
    "ResponsesFile",
    "Run",
    "TaskRun",
    "describe",
    "find_responses",
    "find_results",
    "flat_responses",
    "generation_only",
    "item_for_prompt",
    "item_for_question",
    "judge_info",
    "load_object",
    "load_one_run",
    "load_runs",
    "minority_response_counts",
    "model_from_args",
    "numbered_lines",
    "read_each",
    "read_records",
    "record_responses",
    "response_set",
    "responses_per_item",
    "short_model",
    "task_parts",
    "unique_names",
]
