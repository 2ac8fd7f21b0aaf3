"""Judge a whole task's responses together, as lm-eval filters them.

lm-eval calls process_results once per document, one after the other, so judging there keeps
only one item's 2-6 judge calls in flight, whatever SIUO_JUDGE_CONCURRENCY says. Filters,
however, run over all of a rank's instances before any process_results call, and lm-eval's
``FilterEnsemble.apply`` hands each filter the documents with the responses. ``JudgeTogether``
is the last filter of our generation tasks: it sends every judge call of the rank's documents
to the engine in one batch (the engine's own bound then limits calls in flight) and leaves the
outcomes for process_results, which only assembles them. The responses pass through unchanged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from siuo_task.adapters.lm_eval.mode import predict_only
from siuo_task.data import GenItem, load_siuo
from siuo_task.errors import SiuoError
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeOutcome, shared_engine
from siuo_task.reasoning import ReasoningSettings
from siuo_task.scoring import gen_judge_requests

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_JUDGED: dict[tuple[int, tuple[str, ...], ReasoningSettings], Judged] = {}


@dataclass(frozen=True, slots=True)
class Judged:
    """The outcomes of one document's judge requests, and when the batch ran."""

    outcomes: tuple[JudgeOutcome, ...]
    started: float
    finished: float


def flatten(results: Iterable[Any]) -> tuple[str, ...]:
    """Every response of one document, as process_results receives them from lm-eval: one
    entry per request, each a string (take_first) or a list with one per repeat (take_first_k).
    lm-eval passes a custom process_results the filtered responses untouched (no strip)."""
    flat: list[Any] = []
    for result in results:
        flat.extend(result if isinstance(result, list) else [result])
    return tuple("" if response is None else str(response) for response in flat)


def take(question_id: int, responses: tuple[str, ...], reasoning: ReasoningSettings) -> Judged | None:
    """The outcomes judged ahead for this document, removed from the store (None if none)."""
    with _LOCK:
        return _JUDGED.pop((question_id, responses, reasoning), None)


def store(
    items: list[GenItem],
    responses: list[tuple[str, ...]],
    outcomes: list[list[JudgeOutcome]],
    reasoning: ReasoningSettings,
    started: float,
) -> None:
    """Keep each document's outcomes for its process_results call."""
    finished = time.time()
    with _LOCK:
        for item, texts, judged in zip(items, responses, outcomes, strict=True):
            _JUDGED[(item.question_id, texts, reasoning)] = Judged(tuple(judged), started, finished)


class JudgeTogether:
    """lm-eval filter (``function: !function utils.JudgeTogether``); changes no response.

    lm-eval builds one per ensemble run (``partial(cls, **kwargs)()``) and calls
    ``apply(resps, docs)`` with one entry per instance of the rank.
    """

    def __init__(self, **kwargs: Any) -> None:
        del kwargs

    def apply(self, resps: Iterable[Any], docs: Iterable[Any] | None) -> list[Any]:
        responses = list(resps)
        documents = None if docs is None else list(docs)
        if (
            documents is None
            or len(documents) != len(responses)
            or not all(isinstance(doc, dict) and "question_id" in doc for doc in documents)
        ):
            logger.warning("siuo-task: the filter could not see lm-eval's documents; judging per document instead")
            return responses
        try:
            judge_ahead(documents, responses)
        except SiuoError as exc:
            raise SystemExit(f"siuo-task: {exc}") from exc
        return responses


def judge_ahead(docs: list[dict[str, Any]], results: list[Any]) -> None:
    """Judge every document's responses in one batch at the engine's bound (the filter's work).

    Args:
        docs: this rank's documents, one per instance.
        results: each instance's filtered responses (a string, or a list with one per repeat).
    """
    if predict_only():  # no process_results call follows, and there may be no judge
        return
    config = JudgeConfig.from_env()
    reasoning = ReasoningSettings.from_env()
    by_id = {item.question_id: item for item in load_siuo().gen}
    items = [by_id[doc["question_id"]] for doc in docs]
    responses = [flatten([result]) for result in results]
    batches = [gen_judge_requests(item, texts, reasoning) for item, texts in zip(items, responses, strict=True)]
    requests = [request for batch in batches for request in batch]
    started = time.time()
    # Rank 0 shows progress, as lm-eval's own bars do.
    with tqdm(total=len(requests), desc="Judging", unit="call", disable=os.environ.get("RANK", "0") != "0") as bar:
        outcomes = shared_engine(config).grade_many(requests, lambda _: bar.update(1))
    per_doc, offset = [], 0
    for batch in batches:
        per_doc.append(outcomes[offset : offset + len(batch)])
        offset += len(batch)
    store(items, responses, per_doc, reasoning, started)
