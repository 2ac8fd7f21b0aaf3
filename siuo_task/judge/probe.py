"""One real judge call before a long pass, so a wrong endpoint, key or model stops it in seconds.

The probe sends a real judge request (with its image) straight to the endpoint: no cache, no
retries against a server that said no. An unreachable endpoint, a 401/403, a 404 (no such
model, or a base URL without ``/v1``) raise JudgeEndpointError naming the endpoint and the
cause. The reply is read with the request's own parser: a reply that holds no verdict (a chat
model answering something else, an empty reply) raises JudgeNoVerdictError quoting its start,
since every call of the pass would buy the same; a refusal to grade passes with a note, since
refusals are counted over many calls during the pass (``declines.py``). A 400 naming
``max_tokens`` or ``temperature`` (reasoning models) adapts the engine and is reported as a
note, so the pass that follows sends what the model accepts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from siuo_task.errors import JudgeEndpointError, JudgeNoVerdictError
from siuo_task.judge.backpressure import RateLimitGiveUp
from siuo_task.judge.declines import quoted_start
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.request import JudgeRequest
from siuo_task.judge.transport import http_status, is_rate_limited, is_refusal, is_retryable, retry_after_s

PROBE_TIMEOUT_S = 30.0
PROBE_TRANSIENT_TRIES = 2


@dataclass
class ProbeResult:
    """What the probe saw: HTTP status, the endpoint, the model the server says answered."""

    status: int
    endpoint: str
    model: str | None
    latency_s: float
    reply: str | None
    notes: list[str] = field(default_factory=list)
    completion: Any = None


def probe(engine: JudgeEngine, request: JudgeRequest, on_wait: Callable[[str], None] | None = None) -> ProbeResult:
    """Send ``request`` once (adapting to rejected parameters); raise on a refusing endpoint.

    A 429 (rate limited) is waited on as during judging (the engine's back-pressure, up to
    SIUO_JUDGE_RATE_LIMIT_WAIT), after one line given to ``on_wait`` (stderr when None).

    Raises:
        JudgeEndpointError: unreachable, 401/403/404, rate limited for the whole wait budget,
            or another non-transient HTTP error; the message names the endpoint and the cause,
            and never suggests running again.
        JudgeNoVerdictError: the reply holds no verdict and is no refusal.
    """
    notes: list[str] = []
    transient_left = PROBE_TRANSIENT_TRIES
    said_waiting = False
    while True:
        try:
            with engine.pressure.sending() as sent_at:
                started = time.monotonic()
                completion = engine.transport.send(request, timeout_s=min(engine.config.timeout_s, PROBE_TIMEOUT_S))
            engine.pressure.replied()
        except RateLimitGiveUp as exc:
            raise JudgeEndpointError(str(exc)) from None
        except Exception as exc:
            given_up = engine.transport.adapt(exc) if len(notes) < 2 else None
            if given_up:
                notes.append(_adaptation_note(engine.config.model, given_up))
                continue
            if is_rate_limited(exc):
                if not said_waiting:
                    (on_wait or _to_stderr)(_waiting_line(engine))
                    said_waiting = True
                try:
                    engine.pressure.throttled(sent_at, retry_after_s(exc, cap_s=engine.config.rate_limit_wait_s))
                except RateLimitGiveUp as rate_limited:
                    raise JudgeEndpointError(str(rate_limited)) from None
                continue
            status = http_status(exc)
            if status is not None and not is_refusal(exc) and is_retryable(exc) and transient_left > 1:
                transient_left -= 1
                time.sleep(1.0)
                continue
            raise JudgeEndpointError(engine.transport.refusal_message(exc)) from None
        choices = getattr(completion, "choices", None) or []
        text = choices[0].message.content if choices and choices[0].message else None
        latency = time.monotonic() - started
        model = getattr(completion, "model", None)
        notes += _read_reply(engine, request, text)
        return ProbeResult(200, engine.config.endpoint, model, latency, text, notes, completion)


def _waiting_line(engine: JudgeEngine) -> str:
    return (
        f"the judge endpoint {engine.config.endpoint} answered HTTP 429 (rate limited): waiting on the provider's "
        f"rate limit, at most {engine.config.rate_limit_wait_s:g} s (SIUO_JUDGE_RATE_LIMIT_WAIT) ..."
    )


def _to_stderr(line: str) -> None:
    print(f"siuo-task: {line}", file=sys.stderr, flush=True)


def _read_reply(engine: JudgeEngine, request: JudgeRequest, text: str | None) -> list[str]:
    """Notes on the reply; raises when it holds no verdict and is no refusal."""
    if text and text.strip() and request.parser(text) is not None:
        return []
    if text and request.is_decline is not None and request.is_decline(text):
        return [
            f"the judge declined to grade the check's {request.kind} request ({quoted_start(text)}); refusals are "
            "counted while judging, which stops early if they are frequent"
        ]
    answer = "an empty reply"
    if text and text.strip():
        answer = f"a reply with no {request.kind} verdict: {quoted_start(text)}"
    raise JudgeNoVerdictError(
        f"the judge {engine.config.model} at {engine.config.endpoint} answered a {request.kind} grading request "
        f"with {answer}, so it is not grading as asked; use a judge model that follows grading instructions "
        "(SIUO_JUDGE_MODEL), or check that the endpoint serves the model named"
    )


def _adaptation_note(model: str, given_up: str) -> str:
    if given_up == "max_tokens":
        return f"judge model {model} rejects 'max_tokens': sending 'max_completion_tokens' instead"
    return f"judge model {model} rejects 'temperature': sent without it (the model's default sampling)"
