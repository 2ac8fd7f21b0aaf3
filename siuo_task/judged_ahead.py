"""Judging a whole rank's responses in one batch, before a harness scores them one by one.

Harnesses call their per-document scoring hook serially (lm-eval) or a few documents at a time
(lmms-eval), so judging inside it keeps only a handful of calls in flight whatever
SIUO_JUDGE_CONCURRENCY says. Both run filters over all of a rank's responses first: an adapter's
filter calls ``judge_ahead`` with the items and the responses exactly as the scoring hook will
receive them, every judge call goes to the shared engine at once (its bound is then what limits
calls in flight), and the hook ``take``s the outcomes and only assembles the score.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm import tqdm

from siuo_task.data import GenItem
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import shared_engine
from siuo_task.judge.request import JudgeOutcome
from siuo_task.reasoning import ReasoningSettings
from siuo_task.scoring import gen_judge_requests

_LOCK = threading.Lock()
_JUDGED: dict[tuple[int, tuple[str, ...], ReasoningSettings], Judged] = {}


@dataclass(frozen=True, slots=True)
class Judged:
    """The outcomes of one document's judge requests, and when the batch ran."""

    outcomes: tuple[JudgeOutcome, ...]
    started: float
    finished: float


def judge_ahead(
    items: Sequence[GenItem], responses: Sequence[tuple[str, ...]], config: JudgeConfig, reasoning: ReasoningSettings
) -> None:
    """Judge every document's responses in one batch at the engine's bound and keep the outcomes.

    Args:
        items: each document's item, in order.
        responses: each document's responses as its scoring hook will receive them.
        config: the judge.
        reasoning: the trace settings the hook will use.
    """
    batches = [gen_judge_requests(item, texts, reasoning) for item, texts in zip(items, responses, strict=True)]
    requests = [request for batch in batches for request in batch]
    started = time.time()
    # Rank 0 shows progress, as the harnesses' own bars do.
    with tqdm(total=len(requests), desc="Judging", unit="call", disable=os.environ.get("RANK", "0") != "0") as bar:
        outcomes = shared_engine(config).grade_many(requests, lambda _: bar.update(1))
    finished, offset = time.time(), 0
    with _LOCK:
        for item, texts, batch in zip(items, responses, batches, strict=True):
            judged = Judged(tuple(outcomes[offset : offset + len(batch)]), started, finished)
            _JUDGED[(item.question_id, tuple(texts), reasoning)] = judged
            offset += len(batch)


def take(question_id: int, responses: tuple[str, ...], reasoning: ReasoningSettings) -> Judged | None:
    """The outcomes judged ahead for this document, removed from the store (None if none)."""
    with _LOCK:
        return _JUDGED.pop((question_id, responses, reasoning), None)
