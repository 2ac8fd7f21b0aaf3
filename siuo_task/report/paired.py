"""Paired comparisons of two runs on the items both answered: the difference with its paired
95% interval and McNemar's exact test, as numbers (``tables`` formats them)."""

from __future__ import annotations

from dataclasses import dataclass

from siuo_task.benchmark.stats import mcnemar_exact_p, paired_difference
from siuo_task.report.view import GEN_LABELS, METRIC_LABELS, decisions
from siuo_task.runs import Run

SIGNIFICANCE = 0.05


@dataclass(frozen=True, slots=True)
class Paired:
    """One metric compared between ``first`` and ``second`` on their shared decided items."""

    first: Run
    second: Run
    metric: str
    items: int
    difference: float  # fractions, first - second
    low: float
    high: float
    only_first: int  # items only ``first`` got right (or safe, ...)
    only_second: int
    p: float  # McNemar exact

    @property
    def discordant(self) -> int:
        return self.only_first + self.only_second

    @property
    def significant(self) -> bool:
        return self.p < SIGNIFICANCE

    @property
    def protocols_differ(self) -> bool:
        """Open-ended runs under different protocols are compared, but never as if alike."""
        return self.metric in GEN_LABELS and self.first.responses_per_item != self.second.responses_per_item


def compare(first: Run, second: Run) -> list[Paired]:
    """Every metric both runs decided on at least one shared item, in the report's metric order."""
    comparisons = []
    for metric in METRIC_LABELS:
        a, b = _decided(first, metric), _decided(second, metric)
        common = sorted(a.keys() & b.keys())
        if not common:
            continue
        pairs = [(a[qid], b[qid]) for qid in common]
        diff, low, high = paired_difference(pairs)
        only_first = sum(1 for x, y in pairs if x and not y)
        only_second = sum(1 for x, y in pairs if y and not x)
        p = mcnemar_exact_p(only_first, only_second)
        comparisons.append(Paired(first, second, metric, len(common), diff, low, high, only_first, only_second, p))
    return comparisons


def _decided(run: Run, metric: str) -> dict[int, bool]:
    return {qid: value for qid, value in decisions(run, metric).items() if value is not None}
