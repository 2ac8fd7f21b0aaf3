"""Reading lmms-eval's output files of the SIUO tasks, for ``siuo-eval judge`` and ``report``.

lmms-eval 0.7.3 writes ``<output_path>/<model>/<YYYYMMDD_HHMMSS>_results.json`` and, with
``--log_samples``, ``<YYYYMMDD_HHMMSS>_samples_<task>.jsonl`` beside it. A judged run's sample
lines carry our per-item record; a generation-only run's (``--predict_only``) carry only the
prompt, the target and the responses, and are matched to items by question and reference answer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from siuo_task.harness.api import GEN_TASKS, RECORD_KEY, SiuoData
from siuo_task.runs import (
    Note,
    ResponseSet,
    ResponsesFile,
    Run,
    flat_responses,
    item_for_prompt,
    load_object,
    model_from_args,
    numbered_lines,
    read_each,
    record_responses,
    response_set,
    short_model,
    task_parts,
)

HARNESS = "lmms-eval"
RESULTS = re.compile(r"^(?P<stamp>\d{8}_\d{6})_results\.json$")
SAMPLES = re.compile(r"^(?P<stamp>\d{8}_\d{6})_samples_(?P<task>.+)\.jsonl$")


def iso_stamp(stamp: str) -> str:
    """lmms-eval's ``YYYYMMDD_HHMMSS`` as ISO 8601 text, which sorts by time."""
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"


def recorded_model(results: dict[str, Any]) -> tuple[str, str]:
    """(the model, its class and arguments) as lmms-eval recorded them in results.json."""
    config = results.get("config") or {}
    model_class = str(config.get("model") or results.get("model_source") or "")
    args = str(config.get("model_args") or "")
    path = str(results.get("model_name") or model_from_args(args))
    model = short_model(path) if path else model_class or "unknown model"
    return model, f"{model_class} ({args})" if args else model_class


def _is_generation_only(sample: dict[str, Any]) -> bool:
    # lmms-eval --predict_only skips process_results: no record, only prompt, target, responses.
    return "bypass" in sample and isinstance(sample.get("input"), str) and "filtered_resps" in sample


class LmmsEvalReader:
    harness = HARNESS
    order = 10

    def find_responses(self, path: Path) -> ResponsesFile | Note | None:
        if RESULTS.match(path.name):
            return Note(path, "skipped: an lmms-eval results file (its samples are the input)", quiet=True)
        match = SAMPLES.match(path.name)
        if match is None:
            return None
        task = match["task"]
        if task not in GEN_TASKS:
            return Note(path, f"skipped: lmms-eval samples of {task} (only open-ended answers are judged)", quiet=True)
        results = load_object(path.with_name(f"{match['stamp']}_results.json"))
        settings = ""
        if results is None:
            model, named_by = path.parent.name, "lmms-eval output folder (no results file beside the samples)"
        else:
            model, settings = recorded_model(results)
            from_path = results.get("model_name") or model_from_args(
                str((results.get("config") or {}).get("model_args"))
            )
            named_by = "lmms-eval model_args" if from_path else "lmms-eval model"
        kind = f"lmms-eval {task} samples"
        found = ResponsesFile(HARNESS, model, task, path, kind, named_by, self, stamp=iso_stamp(match["stamp"]))
        found.settings = settings  # a rerun with other model arguments is another run
        return found

    def read_responses(self, found: ResponsesFile, data: SiuoData) -> list[ResponseSet]:
        def read_one(line: tuple[int, dict[str, Any]]) -> ResponseSet:
            number, sample = line
            where = f"'{found.path}' line {number}"
            if RECORD_KEY not in sample and _is_generation_only(sample):
                qid = item_for_prompt(data, sample["input"], str(sample.get("target", "")), where)
                # What process_results would have been given (our tasks hand over the raw text).
                return response_set(qid, flat_responses(sample["filtered_resps"]), where)
            return record_responses(sample.get(RECORD_KEY), where)

        return read_each(found.path, numbered_lines(found.path), read_one)

    def find_results(self, path: Path) -> list[Run] | Note | None:
        match = RESULTS.match(path.name)
        if match is None:
            return None
        results = load_object(path) or {}
        n_samples = (results.get("config") or {}).get("n-samples") or results.get("n-samples") or {}

        def samples_of(task: str) -> Path:
            return path.with_name(f"{match['stamp']}_samples_{task}.jsonl")

        def documents_of(task: str) -> int | None:
            return (n_samples.get(task) or {}).get("effective")

        stamp = iso_stamp(match["stamp"])
        return task_parts(path, HARNESS, recorded_model(results), samples_of, documents_of, stamp)


READER = LmmsEvalReader()
