"""Reading lm-evaluation-harness's output files of the SIUO tasks, for ``siuo-eval judge`` and
``report``.

lm-eval 0.4.13 writes ``<output_path>/<model, '/' as '__'>/results_<ISO time>.json`` and, with
``--log_samples``, ``samples_<task>_<ISO time>.jsonl`` beside it (the same time in both names).
Each sample line holds the document (``doc``, with our ``question_id``), the responses
(``filtered_resps``) and, in a judged run, our per-item record under ``siuo``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from siuo_task.harness.api import GEN_TASKS, RECORD_KEY, DataError, SiuoData
from siuo_task.runs import (
    Note,
    ResponseSet,
    ResponsesFile,
    Run,
    flat_responses,
    load_object,
    model_from_args,
    numbered_lines,
    read_each,
    record_responses,
    response_set,
    short_model,
    task_parts,
)

HARNESS = "lm-eval"
RESULTS = re.compile(r"^results_(?P<stamp>\d{4}-\d{2}-\d{2}T[\d.-]+)\.json$")
SAMPLES = re.compile(r"^samples_(?P<task>.+)_(?P<stamp>\d{4}-\d{2}-\d{2}T[\d.-]+)\.jsonl$")


def iso_stamp(stamp: str) -> str:
    """lm-eval's ``YYYY-MM-DDTHH-MM-SS.ffffff`` as ISO 8601 text, which sorts by time."""
    day, _, time = stamp.partition("T")
    return f"{day}T{time.replace('-', ':')}"


def recorded_model(results: dict[str, Any]) -> tuple[str, str]:
    """(the model, its class and arguments) as lm-eval recorded them in results_<time>.json."""
    config = results.get("config") or {}
    model_class = str(config.get("model") or "")
    args = config.get("model_args") or ""
    args_text = args if isinstance(args, str) else ",".join(f"{k}={v}" for k, v in dict(args).items())
    path = str(results.get("model_name") or model_from_args(args_text))
    model = short_model(path) if path else model_class or "unknown model"
    return model, f"{model_class} ({args_text})" if args_text else model_class


class LmEvalReader:
    harness = HARNESS
    order = 15

    def find_responses(self, path: Path) -> ResponsesFile | Note | None:
        if RESULTS.match(path.name):
            return Note(path, "skipped: an lm-eval results file (its samples are the input)", quiet=True)
        match = SAMPLES.match(path.name)
        if match is None:
            return None
        task = match["task"]
        if task not in GEN_TASKS:
            return Note(path, f"skipped: lm-eval samples of {task} (only open-ended answers are judged)", quiet=True)
        results = load_object(path.with_name(f"results_{match['stamp']}.json"))
        settings = ""
        if results is None:
            model, named_by = path.parent.name, "lm-eval output folder (no results file beside the samples)"
        else:
            (model, settings), named_by = recorded_model(results), "lm-eval results file"
        kind = f"lm-eval {task} samples"
        found = ResponsesFile(HARNESS, model, task, path, kind, named_by, self, stamp=iso_stamp(match["stamp"]))
        found.settings = settings  # a rerun with other model arguments is another run
        return found

    def read_responses(self, found: ResponsesFile, data: SiuoData) -> list[ResponseSet]:
        def read_one(line: tuple[int, dict[str, Any]]) -> ResponseSet:
            number, sample = line
            where = f"'{found.path}' line {number}"
            if RECORD_KEY in sample:
                return record_responses(sample[RECORD_KEY], where)
            # A generation-only line (--predict_only): the document names the item.
            doc = sample.get("doc")
            if not isinstance(doc, dict) or "filtered_resps" not in sample:
                raise DataError(f"{where} is not an lm-eval sample of a SIUO task (no 'doc' and 'filtered_resps')")
            return response_set(doc.get("question_id"), flat_responses(sample["filtered_resps"]), where)

        return read_each(found.path, numbered_lines(found.path), read_one)

    def find_results(self, path: Path) -> list[Run] | Note | None:
        match = RESULTS.match(path.name)
        if match is None:
            return None
        results = load_object(path) or {}
        n_samples = results.get("n-samples") or {}

        def samples_of(task: str) -> Path:
            return path.with_name(f"samples_{task}_{match['stamp']}.jsonl")

        def documents_of(task: str) -> int | None:
            return (n_samples.get(task) or {}).get("effective")

        stamp = iso_stamp(match["stamp"])
        return task_parts(path, HARNESS, recorded_model(results), samples_of, documents_of, stamp)


READER = LmEvalReader()
