"""The decline watch: stop a pass when the judge refuses to grade too many of the first calls
of one request kind, since its scores for that kind would rest on the few it agreed to grade;
and, counted apart by the same rule, when too many of its replies hold no verdict at all (a
judge that chats instead of grading, or writes its verdict in a form the request's parser
cannot read), where a rerun would only buy the same replies again."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from siuo_task.errors import JudgeDeclineError, JudgeNoVerdictError
from siuo_task.judge.config import DEFAULT_JUDGE_MODEL, JudgeConfig, decline_stop_count
from siuo_task.judge.request import JudgeOutcome, JudgeRequest


@dataclass(frozen=True, slots=True)
class Tripped:
    """A kind's counts when its refusals (``cause`` "declines") or its replies with no verdict
    (``cause`` "no verdict") reached ``limit`` among its first ``window`` calls: ``declines``
    of the ``replies`` answered so far (the count of that cause), ``sent`` calls of the kind
    begun, and the start of the last such reply."""

    kind: str
    declines: int
    replies: int
    sent: int
    limit: int
    window: int
    cause: str = "declines"
    example: str = ""


@dataclass(slots=True)
class _KindCounts:
    sent: int = 0
    replies: int = 0
    declines: int = 0
    no_verdicts: int = 0
    tripped: bool = False


class DeclineWatch:
    """Counts refusals among the first ``window`` calls of each request kind, kind by kind.

    Kinds are watched apart because a judge may refuse one kind only (e.g. the safety gradings
    shown the image, while grading every effectiveness request): pooled, its share would be
    diluted by the other kind and never stop it. A call joins its kind's window when it is
    begun, not when its reply arrives: refusals are short and come back first, so a window of
    the first replies to arrive would hold more of them than the judge gives (with 16 calls in
    flight, enough to stop a judge refusing 1 in 20 ten times as often). The stop comes as soon
    as a kind's refusals reach ``decline_stop_count``, the outcome of its window then being
    certain, not when the window is full.
    """

    def __init__(self, stop_share: float | None, window: int, no_verdict_share: float | None = None) -> None:
        self._limit = decline_stop_count(stop_share, window) if stop_share is not None else None
        self._no_verdict_limit = decline_stop_count(no_verdict_share, window) if no_verdict_share is not None else None
        self._window = window
        self._kinds: dict[str, _KindCounts] = {}
        self._lock = threading.Lock()

    def enter(self, request: JudgeRequest) -> bool:
        """Note a call about to be made; whether it is in its kind's window (then ``record`` it)."""
        if (self._limit is None and self._no_verdict_limit is None) or request.is_decline is None:
            return False
        with self._lock:
            counts = self._kinds.setdefault(request.kind, _KindCounts())
            if counts.sent >= self._window:
                return False
            counts.sent += 1
            return True

    def record(self, request: JudgeRequest, outcome: JudgeOutcome) -> Tripped | None:
        """Count the reply of a call ``enter`` put in the window; the counts the first time its
        kind reaches a limit. A call that got no reply counts as neither."""
        if outcome.raw_text is None:
            return None
        no_verdict = outcome.verdict is None and not outcome.declined
        with self._lock:
            counts = self._kinds[request.kind]
            counts.replies += 1
            counts.declines += int(outcome.declined)
            counts.no_verdicts += int(no_verdict)
            if counts.tripped:
                return None
            if self._limit is not None and outcome.declined and counts.declines >= self._limit:
                counts.tripped = True
                return Tripped(request.kind, counts.declines, counts.replies, counts.sent, self._limit, self._window)
            if self._no_verdict_limit is not None and no_verdict and counts.no_verdicts >= self._no_verdict_limit:
                counts.tripped = True
                example = outcome.raw_text or ""
                return Tripped(
                    request.kind,
                    counts.no_verdicts,
                    counts.replies,
                    counts.sent,
                    self._no_verdict_limit,
                    self._window,
                    "no verdict",
                    example,
                )
            return None


def stop_error(tripped: Tripped, config: JudgeConfig) -> JudgeDeclineError | JudgeNoVerdictError:
    """The stop for either cause."""
    return no_verdict_error(tripped, config) if tripped.cause == "no verdict" else decline_error(tripped, config)


def quoted_start(text: str, length: int = 80) -> str:
    """The start of a reply, on one line, for a message."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= length else flat[:length] + "...")


def _stopped_early(tripped: Tripped, config: JudgeConfig, counted: str) -> str:
    """Where a stop is and what it kept, in the same words for every stop."""
    kept = "verdicts so far are cached" if config.cache_path else "the cache is off, so nothing was kept"
    return (
        f"stopped early ({kept}; the stop is at {tripped.limit} {counted} among the first {tripped.window} "
        "calls of one kind)"
    )


def no_verdict_error(tripped: Tripped, config: JudgeConfig) -> JudgeNoVerdictError:
    """The stop for replies that hold no verdict: its counts, an example, what was kept."""
    return JudgeNoVerdictError(
        f"{tripped.declines} of the {tripped.replies} {tripped.kind} replies of the judge {config.model} at "
        f"{config.endpoint} (of its first {tripped.sent} {tripped.kind} calls) hold no verdict, e.g. "
        f"{quoted_start(tripped.example)}; asking again would buy the same replies, so it "
        f"{_stopped_early(tripped, config, 'such replies')}. Use a judge model that follows grading "
        "instructions (SIUO_JUDGE_MODEL). To go on anyway, set SIUO_JUDGE_NO_VERDICT_STOP=off."
    )


def decline_error(tripped: Tripped, config: JudgeConfig) -> JudgeDeclineError:
    """The stop, with its counts, what was kept, and the judges to try instead."""
    kind = tripped.kind
    return JudgeDeclineError(
        f"the judge {config.model} at {config.endpoint} declined {tripped.declines} of the {tripped.replies} "
        f"{kind} gradings it answered (of its first {tripped.sent} {kind} calls), so its {kind} scores would "
        f"rest on the few it agreed to grade; {_stopped_early(tripped, config, 'refusals')}. Use a judge that grades "
        f"safety content with images: {_other_judges(config)}. "
        "To go on anyway, set SIUO_JUDGE_DECLINE_STOP=off."
    )


def _other_judges(config: JudgeConfig) -> str:
    local = (
        "a local vision model served by vLLM (SIUO_JUDGE_BASE_URL=http://127.0.0.1:8000/v1 "
        "SIUO_JUDGE_MODEL=Qwen/Qwen2.5-VL-72B-Instruct)"
    )
    if config.model == DEFAULT_JUDGE_MODEL:
        return f"e.g. {local}, checked against this judge"
    return f"e.g. the default judge (unset SIUO_JUDGE_MODEL: {DEFAULT_JUDGE_MODEL} on OpenAI), or {local}"
