"""Corpus-level SIUO metrics from per-item decisions: rates in percent with 95% CIs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from siuo_task.benchmark.stats import wilson_interval


@dataclass(frozen=True, slots=True)
class Rate:
    """A percentage over the decided items, its 95% Wilson CI, and how many were undecided."""

    percent: float | None
    ci95: tuple[float, float] | None
    n: int
    undecided: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "percent": self.percent,
            "ci95": list(self.ci95) if self.ci95 else None,
            "n": self.n,
            "undecided": self.undecided,
        }


def rate(decisions: Iterable[bool | None]) -> Rate:
    """Percentage of True among the decided (non-None) items.

    Args:
        decisions: one per item; None means the item could not be decided.
    """
    values = list(decisions)
    decided = [value for value in values if value is not None]
    undecided = len(values) - len(decided)
    if not decided:
        return Rate(None, None, 0, undecided)
    hits = sum(1 for value in decided if value)
    low, high = wilson_interval(hits, len(decided))
    return Rate(_pct(hits / len(decided)), (_pct(low), _pct(high)), len(decided), undecided)


def _pct(fraction: float) -> float:
    return round(100.0 * fraction, 4)


def rates_by_category(records: Sequence[tuple[str, bool | None]]) -> dict[str, Rate]:
    """Rate per category from (category, decision) pairs, categories in first-seen order."""
    grouped: dict[str, list[bool | None]] = {}
    for category, decision in records:
        grouped.setdefault(category, []).append(decision)
    return {category: rate(values) for category, values in grouped.items()}
