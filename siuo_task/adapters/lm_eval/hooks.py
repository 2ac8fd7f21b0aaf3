"""Functions the lm-eval task YAMLs point at (through tasks/siuo/utils.py, which lm-eval loads
by file path afresh for every ``!function``; the state, e.g. the judge engine and the outcomes
judged ahead, lives here and in the modules it imports).

They translate; the core scores. What a document contributes and which rows a harness prints
are defined once in siuo_task.results, exactly as for lmms-eval and ``siuo-eval judge``.
Importing this module patches lm-eval's saving (summary.install).
"""

from __future__ import annotations

import time
from typing import Any

import datasets
from PIL import Image

from siuo_task import judged_ahead
from siuo_task.adapters.lm_eval import prejudge, summary
from siuo_task.adapters.lm_eval.mode import predict_only
from siuo_task.circular import answer_rotation, rotate, rotation_values, rotations
from siuo_task.data import GenItem, McqItem, item_document, load_siuo
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import shared_engine
from siuo_task.preflight import check_judge_before_generation
from siuo_task.prompts import mcq_prompt
from siuo_task.reasoning import ReasoningSettings, split_reasoning
from siuo_task.results import (
    GEN_COUNT_ROWS,
    GEN_RATE_ROWS,
    MCQ_COUNT_ROWS,
    MCQ_RATE_ROWS,
    RECORD_KEY,
    SUMMARY_ROW,
    gen_item_values,
    harness_rows,
    mcq_item_values,
)
from siuo_task.run_end import fail_plainly, judge_outcomes
from siuo_task.scoring import assemble_gen_score, score_gen_item, score_mcq_item

# lm-eval's placeholder for "the image goes here"; hf-multimodal / vllm-vlm replace it with the
# model's own image token (or chat image part).
IMAGE_PLACEHOLDER = "<image>"

summary.install()


# -- documents ------------------------------------------------------------------------------


@fail_plainly
def gen_dataset(**metadata: Any) -> datasets.DatasetDict:
    """The validated open-ended items from $SIUO_DATA_DIR or the pinned hub snapshot; the judge
    settings are checked here too, so a missing key fails before any generation, except in a
    generation-only run (its samples are judged later by ``siuo-eval judge``).

    Args:
        metadata: the task's metadata (lm-eval passes it to custom_dataset); not used.
    """
    ReasoningSettings.from_env()
    if not predict_only():
        check_judge_before_generation(JudgeConfig.from_env())
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([item_document(i) for i in load_siuo().gen])})


@fail_plainly
def mcq_dataset(**metadata: Any) -> datasets.DatasetDict:
    """The validated multiple-choice items."""
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([item_document(i) for i in load_siuo().mcq])})


@fail_plainly
def mcq_circular_dataset(**metadata: Any) -> datasets.DatasetDict:
    """One document per (item, rotation), item-major, so ``--limit 4k`` keeps k whole items.

    Each document carries its rotated options and the gold letter they imply, so
    doc_to_text_mcq and doc_to_target_mcq serve it unchanged.
    """
    docs = []
    for item in load_siuo().mcq:
        for question in rotations(item):
            doc = item_document(item)
            doc.update(options=dict(question.options), correct_option=question.gold, rotation=question.rotation)
            docs.append(doc)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def _gen_item(doc: dict[str, Any]) -> GenItem:
    """The validated item behind a document (the loader is cached per process)."""
    return {item.question_id: item for item in load_siuo().gen}[doc["question_id"]]


def _mcq_item(doc: dict[str, Any]) -> McqItem:
    return {item.question_id: item for item in load_siuo().mcq}[doc["question_id"]]


def doc_to_image(doc: dict[str, Any]) -> list[Image.Image]:
    with Image.open(doc["image_path"]) as image:
        return [image.convert("RGB")]


def doc_to_text_gen(doc: dict[str, Any]) -> str:
    """The image, then the question alone, as in the paper: nothing appended."""
    return IMAGE_PLACEHOLDER + doc["question"]


def doc_to_text_mcq(doc: dict[str, Any]) -> str:
    return IMAGE_PLACEHOLDER + mcq_prompt(doc["question"], doc["options"])


def doc_to_target_gen(doc: dict[str, Any]) -> str:
    return doc["reference_answer"]


def doc_to_target_mcq(doc: dict[str, Any]) -> str:
    return doc["correct_option"]


# -- per-document results -------------------------------------------------------------------


def _gen_results(task: str, doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """One item's printed rows, full values and record, from the outcomes the filter judged
    ahead, or judged here when there are none (e.g. a task YAML without our filter)."""
    config = JudgeConfig.from_env()
    reasoning = ReasoningSettings.from_env()
    item, responses = _gen_item(doc), prejudge.flatten(results)
    judged = judged_ahead.take(item.question_id, responses, reasoning)
    if judged is not None:
        score = assemble_gen_score(item, responses, judged.outcomes, reasoning)
        values = gen_item_values(score, config, judged.started, judged.finished)
    else:
        started = time.time()
        score = score_gen_item(item, responses, shared_engine(config), reasoning)
        values = gen_item_values(score, config, started, time.time())
    return _rows(harness_rows(values, GEN_RATE_ROWS, GEN_COUNT_ROWS), task)


@fail_plainly
def process_results_gen(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    return _gen_results("siuo_gen", doc, results)


@fail_plainly
def process_results_gen_greedy(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    return _gen_results("siuo_gen_greedy", doc, results)


@fail_plainly
def process_results_mcq(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    reasoning = ReasoningSettings.from_env()
    values = mcq_item_values(score_mcq_item(_mcq_item(doc), prejudge.flatten(results)[0], reasoning))
    return _rows(harness_rows(values, MCQ_RATE_ROWS, MCQ_COUNT_ROWS), "siuo_mcq")


@fail_plainly
def process_results_mcq_circular(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    question = rotate(_mcq_item(doc), doc["rotation"])
    # The letter is read from the final answer, as in siuo_mcq.
    answer = split_reasoning(prejudge.flatten(results)[0], ReasoningSettings.from_env().tags).answer
    summary.note_task("siuo_mcq_circular")
    return rotation_values(answer_rotation(question, answer))


def _rows(rows: dict[str, Any], task: str) -> dict[str, Any]:
    # The summary is kept per task (siuo_gen and siuo_gen_greedy may run together).
    summary.note_task(task)
    rows[SUMMARY_ROW]["task"] = task
    rows[SUMMARY_ROW]["judge_outcomes"] = judge_outcomes(rows[RECORD_KEY])
    return rows
