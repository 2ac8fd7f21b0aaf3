"""Functions the lmms-eval task YAMLs point at: lmms-eval's conventions around the shared hooks
(siuo_task.harness.task_hooks), which hold the documents, the per-document rows and the run's state.

This is a real module (referenced as ``!function siuo_task.adapters.lmms_eval.hooks.X``): a
``!function utils.X`` would run a task folder's file afresh for every reference.

What a document contributes and how each metric reduces it are defined once, in
siuo_task.benchmark.results; the YAML metric lists are generated from it (scripts/gen_task_yaml.py).
"""

from __future__ import annotations

from typing import Any

import datasets

from siuo_task.adapters.lmms_eval.prejudge import predict_only
from siuo_task.adapters.lmms_eval.summary import current_task
from siuo_task.harness import task_hooks
from siuo_task.harness.api import fail_plainly
from siuo_task.harness.task_hooks import doc_to_image as doc_to_visual
from siuo_task.harness.task_hooks import doc_to_target_gen, doc_to_target_mcq

__all__ = [
    "doc_to_target_gen",
    "doc_to_target_mcq",
    "doc_to_text_gen",
    "doc_to_text_mcq",
    "doc_to_visual",
    "process_docs_gen",
    "process_docs_mcq",
    "process_docs_mcq_circular",
    "process_results_gen",
    "process_results_mcq",
    "process_results_mcq_circular",
]

# -- documents ------------------------------------------------------------------------------


@fail_plainly
def process_docs_gen(dataset: datasets.Dataset) -> datasets.Dataset:
    """Replace the placeholder split with the validated SIUO items (checks the judge too, except
    in a generation-only run: ``--predict_only``)."""
    del dataset  # the YAML's data file is only a placeholder (see _siuo_gen_template_yaml)
    return datasets.Dataset.from_list(task_hooks.gen_documents(judged=not predict_only()))


@fail_plainly
def process_docs_mcq(dataset: datasets.Dataset) -> datasets.Dataset:
    """Replace the placeholder split with the validated SIUO multiple-choice items."""
    del dataset
    return datasets.Dataset.from_list(task_hooks.mcq_documents())


@fail_plainly
def process_docs_mcq_circular(dataset: datasets.Dataset) -> datasets.Dataset:
    """One document per (item, rotation), item-major (see task_hooks.mcq_circular_documents)."""
    del dataset
    return datasets.Dataset.from_list(task_hooks.mcq_circular_documents())


def doc_to_text_gen(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """The question alone: lmms-eval's model classes place the image themselves."""
    return task_hooks.gen_question(doc)


def doc_to_text_mcq(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    return task_hooks.mcq_question(doc)


# -- per-document results -------------------------------------------------------------------
# lmms-eval passes generate_until results as a flat list (one per repeat), each already
# stripped; its filter (prejudge.JudgeTogether) strips the same way to find them again.


@fail_plainly
def process_results_gen(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """This item's per-item values and full record. One hook serves siuo_gen and
    siuo_gen_greedy, whose summaries are kept apart by the task lmms-eval is processing."""
    return task_hooks.gen_rows(current_task() or "siuo_gen", doc, task_hooks.response_texts(results))


@fail_plainly
def process_results_mcq(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    return task_hooks.mcq_rows(current_task() or "siuo_mcq", doc, task_hooks.response_texts(results))


@fail_plainly
def process_results_mcq_circular(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    return task_hooks.mcq_circular_values(doc, task_hooks.response_texts(results))
