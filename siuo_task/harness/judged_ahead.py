"""Judging a whole rank's responses in one batch, before a harness scores them one by one.

Harnesses call their per-document scoring hook serially (lm-eval) or a few documents at a time
(lmms-eval), so judging inside it keeps only a handful of calls in flight whatever
SIUO_JUDGE_CONCURRENCY says. Both run filters over all of a rank's responses first: an adapter's
filter calls ``JudgedAhead.judge`` with the items and the responses exactly as the scoring hook
will receive them, every judge call goes to the engine at once (its bound is then what limits
calls in flight), and the hook ``take``s the outcomes and only assembles the score.

The outcomes are kept by a ``JudgedAhead`` that one harness run owns (siuo_task.harness.task_hooks
starts a new one with each run), under the judge that gave them: outcomes an earlier run left
untaken (it stopped between its filters and its scoring) can never stand in for a later run's
judge calls.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm import tqdm

from siuo_task.benchmark.data import GenItem
from siuo_task.benchmark.reasoning import ReasoningSettings
from siuo_task.benchmark.scoring import gen_judge_requests, grade_batches
from siuo_task.judge.bar_status import BarStatus, rate_limit_status
from siuo_task.judge.engines import AnyEngine, AnyJudge
from siuo_task.judge.request import JudgeOutcome


@dataclass(frozen=True, slots=True)
class Judged:
    """The outcomes of one document's judge requests, and when the batch ran."""

    outcomes: tuple[JudgeOutcome, ...]
    started: float
    finished: float


_Key = tuple[AnyJudge, ReasoningSettings, int, tuple[str, ...]]


class JudgedAhead:
    """One run's outcomes judged by its filters, until its scoring hooks take them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._judged: dict[_Key, Judged] = {}

    def judge(
        self,
        items: Sequence[GenItem],
        responses: Sequence[tuple[str, ...]],
        engine: AnyEngine,
        reasoning: ReasoningSettings,
        show_progress: bool = True,
    ) -> None:
        """Judge every document's responses in one batch at the engine's bound and keep the outcomes.

        Args:
            items: each document's item, in order.
            responses: each document's responses as its scoring hook will receive them.
            engine: the run's engine for the judge.
            reasoning: the trace settings the hook will use.
            show_progress: a progress bar (the launch's first process shows it, as the
                harnesses' own bars are shown).
        """
        batches = [gen_judge_requests(item, texts, reasoning) for item, texts in zip(items, responses, strict=True)]
        total, hidden = sum(len(batch) for batch in batches), not show_progress
        status = None if hidden else rate_limit_status(engine)
        with tqdm(total=total, desc="Judging", unit="call", disable=hidden) as bar, BarStatus(bar, status):
            graded = grade_batches(batches, engine, lambda _: bar.update(1))
        with self._lock:
            for item, texts, outcomes in zip(items, responses, graded.outcomes, strict=True):
                judged = Judged(tuple(outcomes), graded.started, graded.finished)
                self._judged[(engine.config, reasoning, item.question_id, tuple(texts))] = judged

    def take(
        self, config: AnyJudge, reasoning: ReasoningSettings, question_id: int, responses: tuple[str, ...]
    ) -> Judged | None:
        """The outcomes this judge gave ahead for this document, removed from the store (None if none)."""
        with self._lock:
            return self._judged.pop((config, reasoning, question_id, responses), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._judged)
