"""One real judge call before a long pass, so a wrong endpoint, key or model stops it in seconds.

The probe sends a real judge request (with its image) straight to the endpoint: no cache, no
retries against a server that said no. An unreachable endpoint, a 401/403, a 404 (no such
model, or a base URL without ``/v1``) raise JudgeEndpointError naming the endpoint and the
cause. A 400 naming ``max_tokens`` or ``temperature`` (reasoning models) adapts the engine and
is reported as a note, so the pass that follows sends what the model accepts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from siuo_task.errors import JudgeEndpointError
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.request import JudgeRequest
from siuo_task.judge.transport import http_status, is_retryable

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


def probe(engine: JudgeEngine, request: JudgeRequest) -> ProbeResult:
    """Send ``request`` once (adapting to rejected parameters); raise on a refusing endpoint.

    Raises:
        JudgeEndpointError: unreachable, 401/403/404, or another non-transient HTTP error;
            the message names the endpoint and the cause, and never suggests running again.
    """
    notes: list[str] = []
    transient_left = PROBE_TRANSIENT_TRIES
    while True:
        started = time.monotonic()
        try:
            completion = engine.transport.send(request, timeout_s=min(engine.config.timeout_s, PROBE_TIMEOUT_S))
        except Exception as exc:
            given_up = engine.transport.adapt(exc) if len(notes) < 2 else None
            if given_up:
                notes.append(_adaptation_note(engine.config.model, given_up))
                continue
            status = http_status(exc)
            if status is not None and status not in (401, 403, 404) and is_retryable(exc) and transient_left > 1:
                transient_left -= 1
                time.sleep(1.0)
                continue
            raise JudgeEndpointError(engine.transport.refusal_message(exc)) from None
        choices = getattr(completion, "choices", None) or []
        text = choices[0].message.content if choices and choices[0].message else None
        latency = time.monotonic() - started
        model = getattr(completion, "model", None)
        return ProbeResult(200, engine.config.endpoint, model, latency, text, notes, completion)


def _adaptation_note(model: str, given_up: str) -> str:
    if given_up == "max_tokens":
        return f"judge model {model} rejects 'max_tokens': sending 'max_completion_tokens' instead"
    return f"judge model {model} rejects 'temperature': sent without it (the model's default sampling)"
