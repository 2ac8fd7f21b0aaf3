"""Functions the lm-eval task YAMLs point at (through tasks/siuo/utils.py, which lm-eval loads
by file path afresh for every ``!function``; the state, e.g. the judge engine, lives here).

They translate; the core scores. What a document contributes and how each metric reduces it
are defined once in siuo_task.results, exactly as for lmms-eval and ``siuo-eval judge``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import datasets
from PIL import Image

from siuo_task.data import GenItem, McqItem, load_siuo
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import shared_engine
from siuo_task.prompts import mcq_prompt
from siuo_task.results import gen_item_values, mcq_item_values
from siuo_task.scoring import score_gen_item, score_mcq_item

# lm-eval's placeholder for "the image goes here"; hf-multimodal / vllm-vlm replace it with the
# model's own image token (or chat image part).
IMAGE_PLACEHOLDER = "<image>"

# -- documents ------------------------------------------------------------------------------


def _doc(item: GenItem | McqItem) -> dict[str, Any]:
    # The whole item, so lm-eval's samples log shows what was asked; the image is passed as a path.
    return {**dataclasses.asdict(item), "image_path": str(item.image_path)}


def gen_dataset(**metadata: Any) -> datasets.DatasetDict:
    """The validated open-ended items from $SIUO_DATA_DIR or the pinned hub snapshot; the judge
    settings are checked here too, so a missing key fails before any generation.

    Args:
        metadata: the task's metadata (lm-eval passes it to custom_dataset); not used.
    """
    JudgeConfig.from_env()
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([_doc(i) for i in load_siuo().gen])})


def mcq_dataset(**metadata: Any) -> datasets.DatasetDict:
    """The validated multiple-choice items."""
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([_doc(i) for i in load_siuo().mcq])})


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


def _responses(results: list[Any]) -> list[str]:
    """All responses for a document: with ``repeats: 3`` and the take_first_k filter lm-eval
    passes one list of 3; without a filter, one string per request."""
    flat: list[Any] = []
    for result in results:
        flat.extend(result if isinstance(result, list) else [result])
    return ["" if response is None else str(response) for response in flat]


def process_results_gen(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """Judge this item's responses (concurrently, within the engine's bounds); its values."""
    config = JudgeConfig.from_env()
    started = time.time()
    score = score_gen_item(_gen_item(doc), _responses(results), shared_engine(config))
    return gen_item_values(score, config, started, time.time())


def process_results_mcq(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    return mcq_item_values(score_mcq_item(_mcq_item(doc), _responses(results)[0]))


def items_scored(records: list[dict[str, Any]]) -> int:
    """The aggregation of the per-item record (lm-eval aggregates every key it is given)."""
    return len(records)
