"""The one reader of harnesses that run our task files: a results file with one entry per task
under ``"results"`` (plus our ``"siuo"`` summaries), and a samples JSONL per task whose lines
carry our per-item record. lmms-eval and lm-eval write this shape under their own file names
(``FileNaming``); each adapter's ``reader.py`` gives only its naming, how a generation-only
sample line names its item, and its place among the readers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siuo_task.benchmark.card import CARD, CIRCULAR_TASK, GEN_TASKS, MCQ_TASK
from siuo_task.benchmark.circular import ROTATIONS, item_records
from siuo_task.benchmark.results import RECORD_KEY
from siuo_task.errors import DataError
from siuo_task.runs.files import ResponseSet, numbered_lines, read_each, read_records, record_responses
from siuo_task.runs.model import Run, TaskRun
from siuo_task.runs.readers import Note, ResponsesFile, model_from_args, short_model, task_values

if TYPE_CHECKING:
    from siuo_task.benchmark.data import SiuoData

# How a sample line without our record (a generation-only run) names its item and responses;
# it raises DataError, naming ``where``, for a line that is not a sample of a SIUO task.
ReadUnjudged = Callable[[dict[str, Any], "SiuoData", str], ResponseSet]


@dataclass(frozen=True)
class FileNaming:
    """How a harness names its results and samples files: the names as format strings with
    ``{stamp}`` (and ``{task}`` for samples), what a stamp looks like (a regular expression), and
    the stamp as ISO 8601 text."""

    harness: str
    results_name: str
    samples_name: str
    stamp: str
    iso_stamp: Callable[[str], str]

    def _pattern(self, name: str) -> re.Pattern[str]:
        groups = {"stamp": f"(?P<stamp>{self.stamp})", "task": "(?P<task>.+)"}
        parts = re.split(r"\{(stamp|task)\}", name)  # literal text, field, literal text, ...
        return re.compile("^" + "".join(groups[p] if i % 2 else re.escape(p) for i, p in enumerate(parts)) + "$")

    @cached_property
    def results(self) -> re.Pattern[str]:
        return self._pattern(self.results_name)

    @cached_property
    def samples(self) -> re.Pattern[str]:
        return self._pattern(self.samples_name)


def recorded_model(results: dict[str, Any]) -> tuple[str, str]:
    """(the model, its class and arguments) as the harness recorded them in its results file
    (the arguments as text, or as the mapping lm-eval may keep)."""
    config = results.get("config") or {}
    model_class = str(config.get("model") or results.get("model_source") or "")
    args = config.get("model_args") or ""
    args_text = args if isinstance(args, str) else ",".join(f"{k}={v}" for k, v in dict(args).items())
    path = str(results.get("model_name") or model_from_args(args_text))
    model = short_model(path) if path else model_class or "unknown model"
    return model, f"{model_class} ({args_text})" if args_text else model_class


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


class HarnessFilesReader:
    """A reader (see siuo_task.runs.readers) of one harness's results and samples files."""

    def __init__(self, naming: FileNaming, order: int, read_unjudged: ReadUnjudged) -> None:
        self.naming = naming
        self.harness = naming.harness
        self.order = order
        self._read_unjudged = read_unjudged

    def find_responses(self, path: Path) -> ResponsesFile | Note | None:
        naming, harness = self.naming, self.harness
        if naming.results.match(path.name):
            return Note(path, f"skipped: an {harness} results file (its samples are the input)", quiet=True)
        match = naming.samples.match(path.name)
        if match is None:
            return None
        task = match["task"]
        if task not in GEN_TASKS:
            return Note(path, f"skipped: {harness} samples of {task} (only open-ended answers are judged)", quiet=True)
        results = load_object(path.with_name(naming.results_name.format(stamp=match["stamp"])))
        settings = ""
        if results is None:
            model, named_by = path.parent.name, f"{harness} output folder (no results file beside the samples)"
        else:
            model, settings = recorded_model(results)
            from_path = results.get("model_name") or model_from_args(
                str((results.get("config") or {}).get("model_args"))
            )
            named_by = f"{harness} model_args" if from_path else f"{harness} model"
        kind = f"{harness} {task} samples"
        stamp = naming.iso_stamp(match["stamp"])
        found = ResponsesFile(harness, model, task, path, kind, named_by, self, stamp=stamp)
        found.settings = settings  # a rerun with other model arguments is another run
        return found

    def read_responses(self, found: ResponsesFile, data: SiuoData) -> list[ResponseSet]:
        def read_one(line: tuple[int, dict[str, Any]]) -> ResponseSet:
            number, sample = line
            where = f"'{found.path}' line {number}"
            if RECORD_KEY in sample:
                return record_responses(sample[RECORD_KEY], where)
            return self._read_unjudged(sample, data, where)

        return read_each(found.path, numbered_lines(found.path), read_one)

    def find_results(self, path: Path) -> list[Run] | Note | None:
        naming = self.naming
        match = naming.results.match(path.name)
        if match is None:
            return None
        results = load_object(path) or {}
        # lmms-eval keeps the documents scored under "config", lm-eval at the top.
        n_samples = (results.get("config") or {}).get("n-samples") or results.get("n-samples") or {}

        def samples_of(task: str) -> Path:
            return path.with_name(naming.samples_name.format(task=task, stamp=match["stamp"]))

        def documents_of(task: str) -> int | None:
            return (n_samples.get(task) or {}).get("effective")

        stamp = naming.iso_stamp(match["stamp"])
        return task_parts(path, self.harness, recorded_model(results), samples_of, documents_of, stamp)
