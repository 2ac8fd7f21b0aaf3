"""Reading lm-evaluation-harness's output files of the SIUO tasks, for ``siuo-eval judge`` and
``report``: its file naming for the shared reader (siuo_task.runs.harness_files).

lm-eval 0.4.13 writes ``<output_path>/<model, '/' as '__'>/results_<ISO time>.json`` and, with
``--log_samples``, ``samples_<task>_<ISO time>.jsonl`` beside it (the same time in both names).
Each sample line holds the document (``doc``, with our ``question_id``), the responses
(``filtered_resps``) and, in a judged run, our per-item record under ``siuo``.
"""

from __future__ import annotations

from typing import Any

from siuo_task.harness.api import DataError, SiuoData
from siuo_task.runs import FileNaming, HarnessFilesReader, ResponseSet, flat_responses, response_set

_STAMP = r"\d{4}-\d{2}-\d{2}T[\d.-]+"  # an ISO time with - for :


def iso_stamp(stamp: str) -> str:
    """lm-eval's ``YYYY-MM-DDTHH-MM-SS.ffffff`` as ISO 8601 text, which sorts by time."""
    day, _, time = stamp.partition("T")
    return f"{day}T{time.replace('-', ':')}"


def read_unjudged(sample: dict[str, Any], data: SiuoData, where: str) -> ResponseSet:
    """A generation-only line (--predict_only): the document names the item."""
    doc = sample.get("doc")
    if not isinstance(doc, dict) or "filtered_resps" not in sample:
        raise DataError(f"{where} is not an lm-eval sample of a SIUO task (no 'doc' and 'filtered_resps')")
    return response_set(doc.get("question_id"), flat_responses(sample["filtered_resps"]), where)


NAMING = FileNaming("lm-eval", "results_{stamp}.json", "samples_{task}_{stamp}.jsonl", _STAMP, iso_stamp)
READER = HarnessFilesReader(NAMING, order=15, read_unjudged=read_unjudged)
