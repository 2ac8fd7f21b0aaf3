"""What the readers of harnesses that run our task files share: a results file with one entry
per task under ``"results"`` (plus our ``"siuo"`` summaries), and a samples JSONL per task whose
lines carry our per-item record. lmms-eval and lm-eval write this shape under their own names.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from siuo_task.benchmark.card import CARD, CIRCULAR_TASK, GEN_TASKS, MCQ_TASK
from siuo_task.benchmark.circular import ROTATIONS, item_records
from siuo_task.benchmark.results import RECORD_KEY
from siuo_task.errors import DataError
from siuo_task.runs.files import numbered_lines, read_records
from siuo_task.runs.model import Run, TaskRun
from siuo_task.runs.readers import Note, task_values


def load_object(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when unreadable or not an object."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _records(task: str, samples: Path) -> dict[int, dict[str, Any]]:
    if task != CIRCULAR_TASK:
        return read_records(samples)
    # One sample line per item and rotation: the item's record is built from its four cells.
    cells = [row[RECORD_KEY] for _, row in numbered_lines(samples) if RECORD_KEY in row] if samples.is_file() else []
    return item_records(cells)


def task_parts(
    path: Path,
    harness: str,
    model: tuple[str, str],
    samples_of: Callable[[str], Path],
    documents_of: Callable[[str], int | None],
    stamp: str | None = None,
) -> list[Run] | Note:
    """One run part per SIUO task in the results file at ``path``.

    Args:
        path: the results file.
        harness: the harness's name.
        model: (the model as recorded, its description).
        samples_of: the samples file of a task.
        documents_of: how many documents of a task the harness scored (None when unknown).
        stamp: the harness's stamp of the run (its file names'), ISO 8601.
    """
    results = load_object(path)
    if results is None or not isinstance(results.get("results"), dict):
        raise DataError(f"'{path}' is not a {harness} results file (no 'results' object)")
    ours = [task for task in CARD.tasks if task in results["results"]]
    if not ours:
        tasks = ", ".join(results["results"]) or "none"
        return Note(path, f"skipped: {harness} results of other tasks ({tasks}), none of {', '.join(CARD.tasks)}")
    parts = []
    for task in ours:
        documents = documents_of(task)
        items = documents // ROTATIONS if documents and task == CIRCULAR_TASK else documents
        part = TaskRun(task, task_values(results, task), _records(task, samples_of(task)), samples_of(task), items)
        parts.append(
            Run(
                path,
                part if task in GEN_TASKS else None,
                part if task == MCQ_TASK else None,
                harness,
                model[0],
                circular=part if task == CIRCULAR_TASK else None,
                model_detail=model[1],
                stamp=stamp,
                settings=model[1],
            )
        )
    return parts
