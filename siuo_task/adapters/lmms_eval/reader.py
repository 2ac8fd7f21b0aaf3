"""Reading lmms-eval's output files of the SIUO tasks, for ``siuo-eval judge`` and ``report``:
its file naming for the shared reader (siuo_task.runs.harness_files).

lmms-eval 0.7.3 writes ``<output_path>/<model>/<YYYYMMDD_HHMMSS>_results.json`` and, with
``--log_samples``, ``<YYYYMMDD_HHMMSS>_samples_<task>.jsonl`` beside it. A judged run's sample
lines carry our per-item record; a generation-only run's (``--predict_only``) carry only the
prompt, the target and the responses, and are matched to items by question and reference answer.
"""

from __future__ import annotations

from typing import Any

from siuo_task.harness.api import SiuoData
from siuo_task.runs import (
    FileNaming,
    HarnessFilesReader,
    ResponseSet,
    flat_responses,
    item_for_prompt,
    record_responses,
    response_set,
)


def iso_stamp(stamp: str) -> str:
    """lmms-eval's ``YYYYMMDD_HHMMSS`` as ISO 8601 text, which sorts by time."""
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"


def read_unjudged(sample: dict[str, Any], data: SiuoData, where: str) -> ResponseSet:
    """A generation-only line: lmms-eval --predict_only skips process_results, so the line has no
    record, only the prompt, the target and the responses; anything else is not our sample."""
    if "bypass" in sample and isinstance(sample.get("input"), str) and "filtered_resps" in sample:
        qid = item_for_prompt(data, sample["input"], str(sample.get("target", "")), where)
        # What process_results would have been given (our tasks hand over the raw text).
        return response_set(qid, flat_responses(sample["filtered_resps"]), where)
    return record_responses(None, where)


NAMING = FileNaming("lmms-eval", "{stamp}_results.json", "{stamp}_samples_{task}.jsonl", r"\d{8}_\d{6}", iso_stamp)
READER = HarnessFilesReader(NAMING, order=10, read_unjudged=read_unjudged)
