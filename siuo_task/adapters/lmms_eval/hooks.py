"""Functions the lmms-eval task YAMLs point at; they translate, the core scores.

This is a real module (referenced as ``!function siuo_task.adapters.lmms_eval.hooks.X``), so
its cached judge engine is shared by lmms-eval's post-processing threads instead of being
re-created for every ``!function`` reference.

What a document contributes and how each metric reduces it are defined once, in
siuo_task.results; the YAML metric lists are generated from it (scripts/gen_task_yaml.py).
"""

from __future__ import annotations

import dataclasses
import time
from functools import lru_cache
from typing import Any

import datasets
from PIL import Image

from siuo_task.circular import answer_rotation, rotate, rotation_values, rotations
from siuo_task.data import GenItem, McqItem, load_siuo
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.prompts import mcq_prompt
from siuo_task.results import gen_item_values, mcq_item_values
from siuo_task.scoring import score_gen_item, score_mcq_item

# -- documents ------------------------------------------------------------------------------


def process_docs_gen(dataset: datasets.Dataset) -> datasets.Dataset:
    """Replace the placeholder split with the validated SIUO items (checks the judge config too).

    The judge configuration is checked here so that a missing key fails before generation.
    """
    del dataset  # the YAML's data file is only a placeholder (see _siuo_gen_template_yaml)
    JudgeConfig.from_env()
    return datasets.Dataset.from_list([_doc(item) for item in load_siuo().gen])


def process_docs_mcq(dataset: datasets.Dataset) -> datasets.Dataset:
    """Replace the placeholder split with the validated SIUO multiple-choice items."""
    del dataset
    return datasets.Dataset.from_list([_doc(item) for item in load_siuo().mcq])


def _doc(item: GenItem | McqItem) -> dict[str, Any]:
    # The image travels as a path string: lmms-eval strips datasets.Image columns before
    # process_results, and the judge needs the image.
    return {**dataclasses.asdict(item), "image_path": str(item.image_path)}


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    with Image.open(doc["image_path"]) as image:
        return [image.convert("RGB")]


def doc_to_text_gen(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """The question alone, as in the paper: no system prompt, nothing appended."""
    return doc["question"]


def doc_to_text_mcq(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    return mcq_prompt(doc["question"], doc["options"])


def doc_to_target_gen(doc: dict[str, Any]) -> str:
    return doc["reference_answer"]


def doc_to_target_mcq(doc: dict[str, Any]) -> str:
    return doc["correct_option"]


# -- per-document results -------------------------------------------------------------------


@lru_cache(maxsize=4)
def judge_engine(config: JudgeConfig) -> JudgeEngine:
    """One engine per judge configuration per process, shared by every thread."""
    return JudgeEngine(config)


def _responses(results: list[Any]) -> list[str]:
    """All responses for a document: lmms-eval passes generate_until results as a flat list
    (one per repeat, already stripped); nested lists are flattened defensively."""
    flat: list[Any] = []
    for result in results:
        flat.extend(result if isinstance(result, list) else [result])
    return ["" if response is None else str(response) for response in flat]


def _gen_item(doc: dict[str, Any]) -> GenItem:
    """The validated item behind a document (the loader is cached per process)."""
    return {item.question_id: item for item in load_siuo().gen}[doc["question_id"]]


def _mcq_item(doc: dict[str, Any]) -> McqItem:
    return {item.question_id: item for item in load_siuo().mcq}[doc["question_id"]]


def process_results_gen(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """Judge this item's responses; return its per-item values and full record."""
    config = JudgeConfig.from_env()
    started = time.time()
    score = score_gen_item(_gen_item(doc), _responses(results), judge_engine(config))
    return gen_item_values(score, config, started, time.time())


def process_results_mcq(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    return mcq_item_values(score_mcq_item(_mcq_item(doc), _responses(results)[0]))


# -- siuo_mcq_circular ----------------------------------------------------------------------


def process_docs_mcq_circular(dataset: datasets.Dataset) -> datasets.Dataset:
    """One document per (item, rotation), item-major, so ``--limit 4k`` keeps k whole items.

    Each document carries its rotated options and the gold letter they imply, so
    doc_to_text_mcq and doc_to_target_mcq serve it unchanged.
    """
    del dataset
    docs = []
    for item in load_siuo().mcq:
        for question in rotations(item):
            doc = _doc(item)
            doc.update(options=dict(question.options), correct_option=question.gold, rotation=question.rotation)
            docs.append(doc)
    return datasets.Dataset.from_list(docs)


def process_results_mcq_circular(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    question = rotate(_mcq_item(doc), doc["rotation"])
    return rotation_values(answer_rotation(question, _responses(results)[0]))
