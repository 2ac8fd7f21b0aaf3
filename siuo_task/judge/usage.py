"""What judging used, summed over judge outcomes: the one reducer every count of judge use goes
through (an item's usage, each panel judge's, a panel vote's, the progress bar's, a build's per
model), and its cost by the one formula (``pricing.estimate_cost_usd``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from siuo_task.judge.pricing import estimate_cost_usd
from siuo_task.judge.request import JudgeOutcome


@dataclass
class UsageTotals:
    """Calls sent (a cached or coalesced answer takes none; a retried one several), answers from
    the cache, answers shared with an identical request in flight, and tokens."""

    calls: int = 0
    cache_hits: int = 0
    coalesced: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def of(cls, outcomes: Iterable[JudgeOutcome]) -> UsageTotals:
        totals = cls()
        for outcome in outcomes:
            totals.add(outcome)
        return totals

    def add(self, outcome: JudgeOutcome) -> None:
        self.calls += outcome.attempts
        self.cache_hits += int(outcome.cached)
        self.coalesced += int(outcome.coalesced)
        self.prompt_tokens += outcome.prompt_tokens
        self.completion_tokens += outcome.completion_tokens

    def cost_usd(self, models: Sequence[str], endpoint: str | None = None) -> float | None:
        """The tokens at the price of ``models`` (which must agree) at ``endpoint``; None if unknown."""
        return estimate_cost_usd(models, self.prompt_tokens, self.completion_tokens, endpoint)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
