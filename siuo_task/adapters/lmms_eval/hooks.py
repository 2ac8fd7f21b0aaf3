"""Functions the lmms-eval task YAMLs point at; they translate, the core scores.

This is a real module (referenced as ``!function siuo_task.adapters.lmms_eval.hooks.X``), so
its cached judge engine is shared by lmms-eval's post-processing threads instead of being
re-created for every ``!function`` reference.

Per-document values: every rate metric receives a small cell ``{question_id, category,
decision}`` where decision is True/False or None (undecided), so aggregation is a plain
reduction and the samples JSONL carries everything needed to recompute it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import datasets
from PIL import Image

from siuo_task.categories import category_slug
from siuo_task.data import GenItem, McqItem, load_siuo
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.metrics import rate
from siuo_task.prompts import PROMPT_VERSION, mcq_prompt, prompt_templates_sha256
from siuo_task.scoring import GEN_METRICS, score_gen_item, score_mcq_item

RECORD_KEY = "siuo"


# -- documents ------------------------------------------------------------------------------


def process_docs_gen(dataset: datasets.Dataset) -> datasets.Dataset:
    """Replace the placeholder split with the validated SIUO items (checks the judge config too).

    The judge configuration is checked here so that a missing key fails before generation.
    """
    del dataset  # the YAML's data file is only a placeholder; see tasks/siuo/README.md
    JudgeConfig.from_env()
    return datasets.Dataset.from_list([_gen_doc(item) for item in load_siuo().gen])


def process_docs_mcq(dataset: datasets.Dataset) -> datasets.Dataset:
    """Replace the placeholder split with the validated SIUO multiple-choice items."""
    del dataset
    return datasets.Dataset.from_list([_mcq_doc(item) for item in load_siuo().mcq])


def _gen_doc(item: GenItem) -> dict[str, Any]:
    return {
        "question_id": item.question_id,
        "image": item.image,
        "image_path": str(item.image_path),
        "question": item.question,
        "category": item.category,
        "safety_warning": item.safety_warning,
        "reference_answer": item.reference_answer,
    }


def _mcq_doc(item: McqItem) -> dict[str, Any]:
    return {
        "question_id": item.question_id,
        "image": item.image,
        "image_path": str(item.image_path),
        "question": item.question,
        "category": item.category,
        "options": dict(item.options),
        "correct_option": item.correct_option,
    }


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
    return GenItem(
        question_id=doc["question_id"],
        image=doc["image"],
        image_path=Path(doc["image_path"]),
        question=doc["question"],
        category=doc["category"],
        safety_warning=doc["safety_warning"],
        reference_answer=doc["reference_answer"],
    )


def _cell(doc: dict[str, Any], decision: bool | None) -> dict[str, Any]:
    return {"question_id": doc["question_id"], "category": doc["category"], "decision": decision}


def _count(doc: dict[str, Any], count: int) -> dict[str, Any]:
    # A cell, not a bare int, so lmms-eval does not attach a meaningless CLT stderr to a count.
    return {"question_id": doc["question_id"], "count": count}


def _rate_values(doc: dict[str, Any], metric: str, decision: bool | None) -> dict[str, Any]:
    cell = _cell(doc, decision)
    return {metric: cell, f"{metric}_ci95": cell, f"{metric}_{category_slug(doc['category'])}": cell}


def process_results_gen(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """Judge this item's responses and return its metric cells plus the full record."""
    config = JudgeConfig.from_env()
    score = score_gen_item(_gen_item(doc), _responses(results), judge_engine(config))
    values: dict[str, Any] = {}
    for metric in GEN_METRICS:
        values.update(_rate_values(doc, f"{metric}_rate", score.decision(metric)))
    outcomes = [o for r in score.responses for o in (r.safety, r.effectiveness) if o is not None]
    values.update(
        judge_errors=_count(doc, score.judge_errors),
        items_with_missing_votes=_count(doc, int(score.missing_votes)),
        items_undecided=_count(doc, int(any(score.decision(metric) is None for metric in GEN_METRICS))),
        judge_model=sorted({o.model for o in outcomes if o.model}),
        judge_model_requested=config.model,
        judge_endpoint=config.endpoint,
        judge_prompt_sha256=prompt_templates_sha256(),
        protocol=f"{PROMPT_VERSION}; {len(score.responses)} response(s) per item, majority vote",
    )
    values[RECORD_KEY] = score.to_dict()
    return values


def process_results_mcq(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    score = score_mcq_item(_mcq_item(doc), _responses(results)[0])
    values = _rate_values(doc, "accuracy", score.correct)
    values["unparsed_rate"] = _cell(doc, score.parsed is None)
    values[RECORD_KEY] = score.to_dict()
    return values


def _mcq_item(doc: dict[str, Any]) -> McqItem:
    return McqItem(
        question_id=doc["question_id"],
        image=doc["image"],
        image_path=Path(doc["image_path"]),
        question=doc["question"],
        category=doc["category"],
        options=doc["options"],
        correct_option=doc["correct_option"],
    )


# -- aggregations (rank 0) ------------------------------------------------------------------


def aggregate_percent(cells: list[dict[str, Any]]) -> float | None:
    """Percent of decided items whose decision is True."""
    return rate(cell["decision"] for cell in cells).percent


def aggregate_ci95(cells: list[dict[str, Any]]) -> list[float] | None:
    """95% Wilson interval of the same percentage, as [low, high]."""
    interval = rate(cell["decision"] for cell in cells).ci95
    return list(interval) if interval else None


def aggregate_sum(cells: list[dict[str, Any]]) -> int:
    return int(sum(cell["count"] for cell in cells))


def aggregate_distinct(values: list[Any]) -> str:
    """The distinct strings seen across items (lists flattened), comma-separated."""
    seen: set[str] = set()
    for value in values:
        seen.update(value if isinstance(value, list) else [value])
    return ", ".join(sorted(seen))
