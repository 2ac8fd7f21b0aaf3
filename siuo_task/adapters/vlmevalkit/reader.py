"""Reading VLMEvalKit's files of the SIUO datasets, for ``siuo-eval judge`` and ``report``.

VLMEvalKit writes predictions to ``<work-dir>/<model>/<model>_<dataset>.xlsx`` (``.tsv`` /
``.csv`` for some settings; ``T<time>`` run folders in older versions): one row per prompt, the
model's answer in ``prediction``. Our datasets add ``question_id`` and ``repeat`` columns;
VLMEvalKit's own SIUO_GEN has neither and is matched to items by question text. Our datasets'
evaluation writes
``<model>_<dataset>_siuo_results.json`` and ``_siuo_samples.jsonl`` beside the predictions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from siuo_task.adapters.vlmevalkit.names import BUILTIN_GEN, RUN_SUFFIX, TASK_OF_DATASET
from siuo_task.harness.api import CIRCULAR_TASK, GEN_TASKS, MCQ_TASK, DataError, SiuoData
from siuo_task.runs import Note, ResponseSet, ResponsesFile, Run, TaskRun, item_for_question, read_records

HARNESS = "VLMEvalKit"
TABLE_SUFFIXES = (".xlsx", ".tsv", ".csv")
DATASETS = "|".join(sorted(TASK_OF_DATASET, key=len, reverse=True))
PREDICTIONS = re.compile(rf"^(?P<model>.+)_(?P<dataset>{DATASETS})$")
OURS = re.compile(rf"^(?P<model>.+)_(?P<dataset>{DATASETS})_siuo_(?P<what>results\.json|samples\.jsonl)$")
# VLMEvalKit's run folders: T<date>-<time>, or T<date>_G<commit> before 0.0.20.
RUN_FOLDER = re.compile(r"^T(?P<day>\d{8})(?:-(?P<time>\d{6})|_G[0-9a-fA-F]+)$")
# VLMEvalKit's record of a model folder's runs (run.py's status report), and its lock.
STATUS_FILES = ("status.json", "status.json.lock")
# VLMEvalKit writes this into the prediction when its model call failed: not a response.
INFER_FAIL = "Failed to obtain answer"


def folder_stamp(path: Path) -> str | None:
    """The stamp of the VLMEvalKit run folder ``path`` is in, as ISO 8601 text (None outside one)."""
    match = RUN_FOLDER.match(path.parent.name)
    if match is None:
        return None
    day, time = match["day"], match["time"]
    stamp = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    return f"{stamp}T{time[:2]}:{time[2:4]}:{time[4:]}" if time else stamp


def read_predictions(path: Path, data: SiuoData) -> list[ResponseSet]:
    """Responses from a VLMEvalKit predictions file: ours (``question_id`` and ``repeat``
    columns, several rows per item) or its built-in SIUO_GEN (matched by question text)."""
    import pandas as pd

    try:
        if path.suffix == ".xlsx":
            frame = pd.read_excel(path)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    except Exception as exc:  # pandas and openpyxl raise many types for a damaged file
        raise DataError(f"cannot read '{path}' as a VLMEvalKit predictions file ({type(exc).__name__}: {exc})") from exc
    if "prediction" not in frame.columns:
        raise DataError(f"'{path}' has no 'prediction' column: pass a VLMEvalKit predictions file")
    grouped: dict[int, list[tuple[int, str]]] = {}
    failed = []
    for row_number, row in enumerate(frame.to_dict("records"), start=2):
        qid = _question_id(row, data, f"'{path}' row {row_number}")
        prediction = "" if pd.isna(row["prediction"]) else str(row["prediction"])
        if INFER_FAIL in prediction:
            failed.append(qid)
        order = int(row["repeat"]) if "repeat" in row and not pd.isna(row["repeat"]) else row_number
        grouped.setdefault(qid, []).append((order, prediction))
    if failed:
        raise DataError(
            f"'{path}': VLMEvalKit's model call failed for item(s) {sorted(set(failed))[:20]}; "
            "rerun its inference for them (their predictions are not responses to score)"
        )
    return [ResponseSet(qid, tuple(text for _, text in sorted(rows))) for qid, rows in grouped.items()]


def _question_id(row: dict[str, Any], data: SiuoData, where: str) -> int:
    if "question_id" in row and row["question_id"] == row["question_id"]:  # not NaN
        return int(row["question_id"])
    try:
        return item_for_question(data, str(row.get("question", "")), where)
    except DataError as exc:
        raise DataError(f"{exc}; is this a SIUO_GEN predictions file?") from None


class VlmEvalKitReader:
    harness = HARNESS
    order = 30

    def find_responses(self, path: Path) -> ResponsesFile | Note | None:
        if path.name in STATUS_FILES:
            return Note(path, "skipped: VLMEvalKit's run status file", quiet=True)
        if OURS.match(path.name) or path.name.endswith(("_score.csv", "_acc.csv")):
            return Note(path, "skipped: a VLMEvalKit score or results file (the predictions are the input)", quiet=True)
        if path.suffix not in TABLE_SUFFIXES:
            return None
        match = PREDICTIONS.match(path.stem)
        if match is None:
            return Note(path, "skipped: not VLMEvalKit predictions of a SIUO generation dataset")
        dataset = match["dataset"]
        task = TASK_OF_DATASET[dataset]
        if task not in GEN_TASKS:
            return Note(path, f"skipped: VLMEvalKit {dataset} predictions (multiple choice needs no judge)", quiet=True)
        kind = f"VLMEvalKit {dataset} predictions"
        named_by = "VLMEvalKit file name"
        suffix = RUN_SUFFIX[dataset]
        return ResponsesFile(
            HARNESS, match["model"], task, path, kind, named_by, self, suffix, stamp=folder_stamp(path)
        )

    def read_responses(self, found: ResponsesFile, data: SiuoData) -> list[ResponseSet]:
        return read_predictions(found.path, data)

    def find_results(self, path: Path) -> list[Run] | Note | None:
        if path.name in STATUS_FILES:
            return Note(path, "skipped: VLMEvalKit's run status file", quiet=True)
        match = OURS.match(path.name)
        if match is None or match["what"] != "results.json":
            return None
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"'{path}' is not JSON ({exc})") from exc
        dataset = match["dataset"]
        task = TASK_OF_DATASET[dataset]
        samples = path.with_name(path.name.removesuffix("results.json") + "samples.jsonl")
        metrics = {key: value for key, value in results.items() if not isinstance(value, dict)}
        items = results.get("n_items")
        part = TaskRun(task, metrics, read_records(samples), samples, items if isinstance(items, int) else None)
        judge = results.get("judge")
        meta = {**(judge if isinstance(judge, dict) else {}), "usage": results.get("usage") or {}}
        detail = f"{match['model']} (from the file name; predictions {results.get('input') or 'unknown'})"
        return [
            Run(
                path,
                part if task in GEN_TASKS else None,
                part if task == MCQ_TASK else None,
                HARNESS,
                match["model"],
                meta,
                circular=part if task == CIRCULAR_TASK else None,
                suffix=RUN_SUFFIX[dataset] if task != MCQ_TASK else None,
                model_detail=detail,
                stamp=folder_stamp(path),
            )
        ]


READER = VlmEvalKitReader()
__all__ = ["BUILTIN_GEN", "READER", "read_predictions"]
