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
from collections.abc import Iterable
from typing import Any

from siuo_task.adapters.lm_eval.mode import predict_only
from siuo_task.harness import task_hooks
from siuo_task.harness.api import fail_plainly

logger = logging.getLogger(__name__)


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
        judge_ahead(documents, responses)
        return responses


@fail_plainly
def judge_ahead(docs: list[dict[str, Any]], results: list[Any]) -> None:
    """Judge every document's responses in one batch at the engine's bound (the filter's work).

    Args:
        docs: this rank's documents, one per instance.
        results: each instance's filtered responses (a string, or a list with one per repeat).
    """
    if predict_only():  # no process_results call follows, and there may be no judge
        return
    by_id = {item.question_id: item for item in task_hooks.current_run().data().gen}
    task_hooks.judge_ahead([by_id[doc["question_id"]] for doc in docs], results)
