"""Functions the lmms-eval task YAMLs point at; they translate, the core scores.

This is a real module (referenced as ``!function siuo_task.adapters.lmms_eval.hooks.X``), so
its cached judge engine is shared by lmms-eval's post-processing threads instead of being
re-created for every ``!function`` reference.

What a document contributes and how each metric reduces it are defined once, in
siuo_task.results; the YAML metric lists are generated from it (scripts/gen_task_yaml.py).
"""

from __future__ import annotations

import time
from typing import Any

import datasets
from PIL import Image

from siuo_task import judged_ahead
from siuo_task.adapters.lmms_eval import prejudge
from siuo_task.adapters.lmms_eval.summary import current_task
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

# -- documents ------------------------------------------------------------------------------


@fail_plainly
def process_docs_gen(dataset: datasets.Dataset) -> datasets.Dataset:
    """Replace the placeholder split with the validated SIUO items (checks the judge config too).

    The judge configuration is checked here so that a missing key fails before generation,
    except in a generation-only run (``--predict_only``), which needs no judge: its samples
    are judged later by ``siuo-eval judge``.
    """
    del dataset  # the YAML's data file is only a placeholder (see _siuo_gen_template_yaml)
    ReasoningSettings.from_env()
    if not prejudge.predict_only():
        check_judge_before_generation(JudgeConfig.from_env())
    return datasets.Dataset.from_list([item_document(item) for item in load_siuo().gen])


@fail_plainly
def process_docs_mcq(dataset: datasets.Dataset) -> datasets.Dataset:
    """Replace the placeholder split with the validated SIUO multiple-choice items."""
    del dataset
    return datasets.Dataset.from_list([item_document(item) for item in load_siuo().mcq])


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


@fail_plainly
def process_results_gen(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """This item's per-item values and full record, from the verdicts judged ahead by the
    task's filter (prejudge.JudgeTogether), or judged here when there are none."""
    config = JudgeConfig.from_env()
    reasoning = ReasoningSettings.from_env()
    # As lmms-eval hands them over (it strips each response; the filter mirrors that).
    item, responses = _gen_item(doc), tuple(_responses(results))
    judged = judged_ahead.take(item.question_id, responses, reasoning)
    if judged is not None:
        score = assemble_gen_score(item, responses, judged.outcomes, reasoning)
        values = gen_item_values(score, config, judged.started, judged.finished)
    else:
        started = time.time()
        score = score_gen_item(item, responses, shared_engine(config), reasoning)
        values = gen_item_values(score, config, started, time.time())
    return _rows(harness_rows(values, GEN_RATE_ROWS, GEN_COUNT_ROWS), "siuo_gen")


@fail_plainly
def process_results_mcq(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    reasoning = ReasoningSettings.from_env()
    values = mcq_item_values(score_mcq_item(_mcq_item(doc), _responses(results)[0], reasoning))
    return _rows(harness_rows(values, MCQ_RATE_ROWS, MCQ_COUNT_ROWS), "siuo_mcq")


def _rows(rows: dict[str, Any], default_task: str) -> dict[str, Any]:
    # The summary is kept per task (siuo_gen and siuo_gen_greedy may run together).
    rows[SUMMARY_ROW]["task"] = current_task() or default_task
    rows[SUMMARY_ROW]["judge_outcomes"] = judge_outcomes(rows[RECORD_KEY])
    return rows


# -- siuo_mcq_circular ----------------------------------------------------------------------


@fail_plainly
def process_docs_mcq_circular(dataset: datasets.Dataset) -> datasets.Dataset:
    """One document per (item, rotation), item-major, so ``--limit 4k`` keeps k whole items.

    Each document carries its rotated options and the gold letter they imply, so
    doc_to_text_mcq and doc_to_target_mcq serve it unchanged.
    """
    del dataset
    docs = []
    for item in load_siuo().mcq:
        for question in rotations(item):
            doc = item_document(item)
            doc.update(options=dict(question.options), correct_option=question.gold, rotation=question.rotation)
            docs.append(doc)
    return datasets.Dataset.from_list(docs)


@fail_plainly
def process_results_mcq_circular(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    question = rotate(_mcq_item(doc), doc["rotation"])
    # The letter is read from the final answer, as in siuo_mcq (the task hands us raw text).
    answer = split_reasoning(_responses(results)[0], ReasoningSettings.from_env().tags).answer
    return rotation_values(answer_rotation(question, answer))
