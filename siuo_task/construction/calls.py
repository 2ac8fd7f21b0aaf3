"""Stage calls through the judge engine: JSON requested and validated, malformed replies retried.

Shared by the construction stages and the audit. One engine per model (each with the judge
engine's machine-wide concurrency bound, retries on transport errors, and cache); on top of
the engine's retries, a reply that is not the JSON the stage asked for is asked again, up to
``attempts`` times, and then is a recorded stage error.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from siuo_task.construction.replies import ReplyError, json_parser, text_parser, validate
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.request import JudgeOutcome, JudgeRequest
from siuo_task.judge.usage import UsageTotals

Check = Callable[[Mapping[str, Any]], None]


@dataclass
class Usage:
    """Calls, cache hits and tokens per model in this run (thread-safe)."""

    per_model: dict[str, UsageTotals] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    endpoint: str | None = None  # priced only where the price table's provider serves it

    def add(self, model: str, outcome: JudgeOutcome) -> None:
        with self.lock:
            self.per_model.setdefault(model, UsageTotals()).add(outcome)

    def to_dict(self) -> dict[str, Any]:
        names = ("calls", "cache_hits", "prompt_tokens", "completion_tokens")
        return {
            model: {
                **{name: getattr(totals, name) for name in names},
                "cost_usd": totals.cost_usd([model], self.endpoint),
            }
            for model, totals in sorted(self.per_model.items())
        }


@dataclass(frozen=True, slots=True)
class StageCall:
    """A stage's final parsed value (None after ``attempts`` bad replies) and the earlier errors."""

    value: Any
    raw_text: str | None
    model_returned: str | None
    errors: tuple[str, ...]


class StageCaller:
    """Sends stage requests to the engine of the stage's model."""

    def __init__(self, base: JudgeConfig, models: Iterable[str], prompt_version: str, attempts: int) -> None:
        self.engines = {model: JudgeEngine(replace(base, model=model)) for model in sorted(set(models))}
        self.prompt_version = prompt_version
        self.attempts = attempts
        self.usage = Usage(endpoint=base.endpoint)

    def call(self, model: str, stage: str, prompt: str, image: Path | None, check: Check | None) -> StageCall:
        """One stage; ``check`` None means a free-text reply (any non-empty text).

        A reply that is not what the stage asked for is asked for again, up to ``attempts``
        times; a call that got no reply (after the engine's own retries) is not.
        """
        parser = json_parser(check) if check is not None else text_parser
        request = JudgeRequest(
            stage, prompt, image, parser=parser, prompt_version=self.prompt_version, json_reply=check is not None
        )
        errors: list[str] = []
        for _ in range(self.attempts):
            outcome = self.engines[model].grade(request)
            self.usage.add(model, outcome)
            if outcome.verdict is not None:
                value = json.loads(str(outcome.verdict)) if check is not None else outcome.verdict
                return StageCall(value, outcome.raw_text, outcome.model, tuple(errors))
            errors.append(_why_malformed(outcome, check))
            if outcome.raw_text is None:
                break  # no reply at all: the engine has already retried the transport
        return StageCall(None, None, None, tuple(errors))

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()


def _why_malformed(outcome: JudgeOutcome, check: Check | None) -> str:
    if outcome.raw_text is None or not outcome.raw_text.strip() or check is None:
        return outcome.error or "no reply"
    try:
        validate(outcome.raw_text, check)
    except ReplyError as exc:
        return f"malformed reply: {exc}"
    return outcome.error or "malformed reply"
