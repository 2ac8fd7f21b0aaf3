"""Judge a whole task's responses together, when lmms-eval filters them (siuo_task.harness.judged_ahead).

lmms-eval post-processes ``--process_docs_parallel`` documents at once (default 4), so judging
inside process_results keeps at most 4 documents' calls in flight (4 x 6 for siuo_gen), whatever
SIUO_JUDGE_CONCURRENCY says. Filters, however, run over all of a rank's responses before any
process_results call. ``JudgeTogether`` is the last filter of our generation tasks: it sends
every judge call of the rank's documents to the engine in one batch (so the engine's own bound
is what limits calls in flight) and leaves the outcomes for process_results, which then only
assembles them. Each rank judges its own shard; the responses pass through unchanged.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Iterable
from typing import Any

from siuo_task.harness import task_hooks
from siuo_task.harness.api import fail_plainly

logger = logging.getLogger(__name__)


class JudgeTogether:
    """lmms-eval filter (``function: !function ...prejudge.JudgeTogether``); changes nothing."""

    def __init__(self, **kwargs: Any) -> None:
        del kwargs

    def apply(self, resps: Iterable[Any], docs: Any) -> list[Any]:
        responses = list(resps)
        instances = _calling_instances(len(responses))
        if instances is None:
            logger.warning("siuo-task: could not see lmms-eval's instances; judging per document instead")
            return responses
        judge_ahead([instance.doc_id for instance in instances], responses)
        return responses


def _calling_instances(count: int) -> list[Any] | None:
    # lmms-eval's FilterEnsemble.apply(instances, docs) calls Filter.apply(resps, None): the
    # instances, which carry each response's document id, are only in the caller's frame.
    frame = inspect.currentframe()
    try:
        caller = frame.f_back.f_back if frame and frame.f_back else None
        instances = caller.f_locals.get("instances") if caller else None
    finally:
        del frame
    if not isinstance(instances, list) or len(instances) != count:
        return None
    if not all(isinstance(getattr(instance, "doc_id", None), int) for instance in instances):
        return None
    return instances


def predict_only() -> bool:
    # lmms-eval hands process_docs neither its arguments nor the mode, and in a
    # generation-only run it never calls process_results; its CLI flag is the one signal.
    return any(arg.replace("-", "_") == "__predict_only" for arg in sys.argv)


@fail_plainly
def judge_ahead(doc_ids: list[int], results: list[Any]) -> None:
    """Judge every document's responses in one batch at the engine's bound (the filter's work).

    Args:
        doc_ids: the document ids of this rank's instances, in order (process_docs_gen keeps
            the loader's item order, so an id is an index into it).
        results: each instance's filtered responses (a string, or a list with one per repeat).
    """
    if predict_only():
        return
    gen = task_hooks.current_run().data().gen
    # lmms-eval strips each response before process_results: stripped here too, they are found again.
    task_hooks.judge_ahead([gen[doc_id] for doc_id in doc_ids], results, strip=True)
