"""Functions the lm-eval task YAMLs point at (through tasks/siuo/utils.py, which lm-eval loads
by file path afresh for every ``!function``): lm-eval's conventions around the shared hooks
(siuo_task.harness.task_hooks), which hold the documents, the per-document rows and the run's state.

What a document contributes and which rows a harness prints are defined once in
siuo_task.benchmark.results, exactly as for lmms-eval and ``siuo-eval judge``.
Importing this module patches lm-eval's saving (summary.install).
"""

from __future__ import annotations

from typing import Any

import datasets

from siuo_task.adapters.lm_eval import summary
from siuo_task.adapters.lm_eval.mode import predict_only
from siuo_task.harness import task_hooks
from siuo_task.harness.api import fail_plainly
from siuo_task.harness.task_hooks import doc_to_image, doc_to_target_gen, doc_to_target_mcq

__all__ = [
    "doc_to_image",
    "doc_to_target_gen",
    "doc_to_target_mcq",
    "doc_to_text_gen",
    "doc_to_text_mcq",
    "gen_dataset",
    "mcq_circular_dataset",
    "mcq_dataset",
    "process_results_gen",
    "process_results_gen_greedy",
    "process_results_mcq",
    "process_results_mcq_circular",
]

# lm-eval's placeholder for "the image goes here"; hf-multimodal / vllm-vlm replace it with the
# model's own image token (or chat image part).
IMAGE_PLACEHOLDER = "<image>"

summary.install()


# -- documents ------------------------------------------------------------------------------


def _dataset(docs: list[dict[str, Any]]) -> datasets.DatasetDict:
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


@fail_plainly
def gen_dataset(**metadata: Any) -> datasets.DatasetDict:
    """The validated open-ended items (the judge checked first, except in a generation-only run).

    Args:
        metadata: the task's metadata (lm-eval passes it to custom_dataset); not used.
    """
    return _dataset(task_hooks.gen_documents(judged=not predict_only()))


@fail_plainly
def mcq_dataset(**metadata: Any) -> datasets.DatasetDict:
    """The validated multiple-choice items."""
    return _dataset(task_hooks.mcq_documents())


@fail_plainly
def mcq_circular_dataset(**metadata: Any) -> datasets.DatasetDict:
    """One document per (item, rotation), item-major (see task_hooks.mcq_circular_documents)."""
    return _dataset(task_hooks.mcq_circular_documents())


def doc_to_text_gen(doc: dict[str, Any]) -> str:
    """The image, then the question alone, as in the paper: nothing appended."""
    return IMAGE_PLACEHOLDER + task_hooks.gen_question(doc)


def doc_to_text_mcq(doc: dict[str, Any]) -> str:
    return IMAGE_PLACEHOLDER + task_hooks.mcq_question(doc)


# -- per-document results -------------------------------------------------------------------
# lm-eval passes one entry per request, each a string (take_first) or a list with one per
# repeat (take_first_k), untouched (no strip). One hook per task: lm-eval does not say which
# task it is processing.


@fail_plainly
def process_results_gen(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    return task_hooks.gen_rows("siuo_gen", doc, task_hooks.response_texts(results))


@fail_plainly
def process_results_gen_greedy(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    return task_hooks.gen_rows("siuo_gen_greedy", doc, task_hooks.response_texts(results))


@fail_plainly
def process_results_mcq(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    return task_hooks.mcq_rows("siuo_mcq", doc, task_hooks.response_texts(results))


@fail_plainly
def process_results_mcq_circular(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    return task_hooks.mcq_circular_values(doc, task_hooks.response_texts(results))
