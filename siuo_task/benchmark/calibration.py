"""Human-calibrated rates: a judge's verdicts on every item, corrected by human labels on a sample.

The method is prediction-powered inference (Angelopoulos, Bates, Fannjiang, Jordan and Zrnic,
Science 2023) with the power tuning of PPI++ (Angelopoulos, Duchi and Zrnic, 2024), written here
for what a review of one run is: a finite set of N items (the run's), every one with the judge's
verdict, a random sample of them labelled by people, and as target the rate people would give over
all N items. In survey-sampling words it is the difference (regression) estimator of a
stratified random sample:

    estimate = sum over categories h of  N_h / N * ( lam * mean of f over the N_h items
                                                     + mean of (y - lam * f) over the n_h labelled items )

f is the judge's item verdict (1 or 0), y the people's. With lam = 1 it is plain PPI: the judge's
rate plus the mean error people found on the labelled items; with lam = 0 it is the labels alone.
Whatever the judge's bias, the labelled items' mean error estimates it without bias, so the
estimate is unbiased for the people's rate; the interval's width comes from how much y - lam * f
varies, which is small when the judge agrees with people and never more than the labels alone give
at the tuned lam.

Why stratified: ``export-review`` lists categories in turn, each category's items in a seeded
random order (``siuo_task.commands.review.stratified_order``), so labelling from the top labels about the
same number of items in every category, whatever its size. Within a category the labelled items
are a simple random sample; weighting each category by its share of the N items undoes the
unequal sampling rates. That is the assumption: within each category, which items were labelled
does not depend on what they are (true when labelled from the top of the export, in its order).

Variance: sum_h (N_h / N)^2 (1 - n_h / N_h) s^2 / n_h, with the finite-population factor
(1 - n_h / N_h), since the target is these N items (labelling them all leaves no uncertainty).
s^2 is the within-category variance of y - lam * f, pooled over categories: with the 5 to 10
labels a category gets from a 60-item review, a category's own variance is often 0 (the judge
agreed on every labelled item) and would give intervals that are too narrow. lam is chosen, as in
PPI++, to minimise that pooled variance (the pooled within-category covariance of y and f over the
pooled variance of f, from the labels alone), kept within [0, 1]. The pooled variance also counts
one pseudo-pair of items that disagree each way (``PSEUDO``), so a review that happens to show no
disagreement still gets an interval of honest width. The 95% interval is the normal one,
estimate +- 1.96 se, cut to [0, 1]; tests/test_calibration.py checks its coverage by simulation.

An item the judge could not decide (every verdict an error) still belongs to the N items: its f is
the judge's rate over its category's decided items (over all decided items if its category has
none). PPI's guarantee holds for any f fixed before the labels are seen, so this only costs width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from siuo_task.benchmark.stats import Z_95

# A category's own calibrated rate is shown from this many labelled items on: below it a normal
# interval over one category's few labels is not trustworthy (export-review's order reaches 10
# per category at about 90 labelled items).
MIN_LABELLED_PER_CATEGORY = 10
# Every category needs this many labelled items for the overall estimate: one labelled item says
# nothing of how the judge's error varies within its category.
MIN_LABELLED_PER_STRATUM = 2
# The pooled variance counts, beside the labelled items, one pair of pseudo-items that disagree
# each way, (f, y) = (1, 0) and (0, 1), as one more category: with few labels and a judge that
# rarely errs, the labels may show no disagreement at all, and an interval of width 0 would claim
# a certainty 60 labels cannot give (the normal interval undercovers there; the simulation in
# tests/test_calibration.py found 87% coverage at 30 labels without the pair, 93-98% with it).
PSEUDO = 1.0


@dataclass(frozen=True, slots=True)
class CalibrationItem:
    """One item of the run: its category, the judge's item verdict (None: undecided) and the
    people's (None: not labelled)."""

    category: str
    judge: bool | None
    human: bool | None


@dataclass(frozen=True, slots=True)
class Stratum:
    """One category: its items' judge verdicts (undecided ones imputed) and its labelled pairs."""

    size: int
    judge_mean: float
    labelled: tuple[tuple[float, float], ...]  # (f, y) per labelled item

    @property
    def n(self) -> int:
        return len(self.labelled)


@dataclass(frozen=True, slots=True)
class Calibrated:
    """A calibrated rate (fractions), with what it rests on."""

    estimate: float
    low: float
    high: float
    judge_only: float | None  # the judge's rate over the items it decided
    human_only: float | None  # the people's rate over the labelled items, unweighted
    human_only_low: float  # the labels alone, same design (lam = 0): the interval to beat
    human_only_high: float
    labelled: int
    items: int
    tuning: float  # lam
    residual_variance: float  # pooled s^2 of y - lam * f


class NotEnoughLabels(ValueError):
    """The labels cannot support an estimate; the message says what is missing."""


def strata(items: Sequence[CalibrationItem]) -> dict[str, Stratum]:
    """The items grouped by category, with undecided judge verdicts imputed (see the module)."""
    decided = [item.judge for item in items if item.judge is not None]
    overall = sum(decided) / len(decided) if decided else 0.5
    grouped: dict[str, list[CalibrationItem]] = {}
    for item in items:
        grouped.setdefault(item.category, []).append(item)
    result = {}
    for category in sorted(grouped):
        members = grouped[category]
        own = [item.judge for item in members if item.judge is not None]
        fill = sum(own) / len(own) if own else overall
        values = [float(item.judge) if item.judge is not None else fill for item in members]
        labelled = tuple(
            (value, float(item.human)) for value, item in zip(values, members, strict=True) if item.human is not None
        )
        result[category] = Stratum(len(members), sum(values) / len(values), labelled)
    return result


def _centred_sums(parts: Sequence[Stratum], pseudo: float = PSEUDO) -> tuple[float, float, float, float]:
    """Pooled within-category sums of squares: (f, f), (y, f), (y, y), and the degrees of freedom,
    with ``pseudo`` times the disagreeing pseudo-pair."""
    sff = syf = syy = 0.0
    freedom: float = 0
    for part in parts:
        if part.n < 2:
            continue
        mean_f = sum(f for f, _ in part.labelled) / part.n
        mean_y = sum(y for _, y in part.labelled) / part.n
        sff += sum((f - mean_f) ** 2 for f, _ in part.labelled)
        syf += sum((y - mean_y) * (f - mean_f) for f, y in part.labelled)
        syy += sum((y - mean_y) ** 2 for _, y in part.labelled)
        freedom += part.n - 1
    if freedom:
        # One disagreement each way, (f, y) = (1, 0) and (0, 1), as if a further category held them.
        sff, syf, syy = sff + pseudo / 2, syf - pseudo / 2, syy + pseudo / 2
        freedom += pseudo
    return sff, syf, syy, freedom


def tuning(parts: Sequence[Stratum]) -> float:
    """PPI++'s lam: the pooled within-category regression slope of y on f over the labelled items
    (without the pseudo-pair, which would pull a faultless judge's weight below 1), within [0, 1];
    1 (plain PPI) when the judge's verdicts do not vary over the labelled items."""
    sff, syf, _, _ = _centred_sums(parts, pseudo=0.0)
    if sff <= 0:
        return 1.0
    return min(1.0, max(0.0, syf / sff))


def residual_variance(parts: Sequence[Stratum], lam: float) -> float:
    """Pooled within-category variance of y - lam * f over the labelled items."""
    sff, syf, syy, freedom = _centred_sums(parts)
    if freedom == 0:
        return 0.0
    return max(0.0, syy - 2 * lam * syf + lam * lam * sff) / freedom


def design_factor(parts: Sequence[Stratum], labelled: Sequence[int] | None = None) -> float:
    """sum_h (N_h / N)^2 (1 - n_h / N_h) / n_h: the estimate's variance per unit of s^2 with n_h
    labelled items per category (the current ones unless ``labelled`` is given)."""
    total = sum(part.size for part in parts)
    counts = labelled if labelled is not None else [part.n for part in parts]
    factor = 0.0
    for part, n in zip(parts, counts, strict=True):
        if n < part.size:
            factor += (part.size / total) ** 2 * (1 - n / part.size) / n
    return factor


def _estimate(parts: Sequence[Stratum], lam: float) -> float:
    total = sum(part.size for part in parts)
    value = 0.0
    for part in parts:
        correction = sum(y - lam * f for f, y in part.labelled) / part.n
        value += part.size / total * (lam * part.judge_mean + correction)
    return value


def _check(parts: dict[str, Stratum]) -> None:
    # A category labelled in full needs no spread (a category of one item cannot have two labels).
    short = [name for name, part in parts.items() if part.n < min(MIN_LABELLED_PER_STRATUM, part.size)]
    if short:
        raise NotEnoughLabels(
            f"category(ies) {', '.join(short)} have fewer than {MIN_LABELLED_PER_STRATUM} labelled items; label "
            "the review from the top (its order takes the categories in turn)"
        )


def calibrate(items: Sequence[CalibrationItem], z: float = Z_95) -> Calibrated:
    """The human-calibrated rate of ``items`` with its interval (see the module's docstring).

    Raises:
        NotEnoughLabels: a category has fewer than MIN_LABELLED_PER_STRATUM labelled items.
    """
    parts = strata(items)
    _check(parts)
    ordered = list(parts.values())
    lam = tuning(ordered)
    variance = residual_variance(ordered, lam)
    factor = design_factor(ordered)
    estimate = _estimate(ordered, lam)
    half = z * math.sqrt(variance * factor)
    human_estimate = _estimate(ordered, 0.0)
    human_half = z * math.sqrt(residual_variance(ordered, 0.0) * factor)
    decided = [item.judge for item in items if item.judge is not None]
    labels = [y for part in ordered for _, y in part.labelled]
    return Calibrated(
        estimate=estimate,
        low=max(0.0, estimate - half),
        high=min(1.0, estimate + half),
        judge_only=sum(decided) / len(decided) if decided else None,
        human_only=sum(labels) / len(labels) if labels else None,
        human_only_low=max(0.0, human_estimate - human_half),
        human_only_high=min(1.0, human_estimate + human_half),
        labelled=len(labels),
        items=len(items),
        tuning=lam,
        residual_variance=variance,
    )


def next_labels(parts: Sequence[Stratum], counts: list[int]) -> list[int]:
    """The labelled counts after one more item in export-review's order: the next category in
    turn, i.e. the first (by name) of those with the fewest labels that still have unlabelled items."""
    open_ = [index for index, part in enumerate(parts) if counts[index] < part.size]
    if not open_:
        return counts
    chosen = min(open_, key=lambda index: counts[index])
    return [count + (index == chosen) for index, count in enumerate(counts)]


def labels_for_width(items: Sequence[CalibrationItem], width: float, z: float = Z_95) -> int:
    """How many labelled items in all (continuing export-review's order) bring the interval's
    full width down to ``width`` (a fraction), if the spread of the judge's errors stays as the
    labels so far show it. Labelling every item always does (the width is then 0).

    Raises:
        NotEnoughLabels: as ``calibrate``.
    """
    parts = strata(items)
    _check(parts)
    ordered = list(parts.values())
    variance = residual_variance(ordered, tuning(ordered))
    counts = [part.n for part in ordered]
    while 2 * z * math.sqrt(variance * design_factor(ordered, counts)) > width:
        following = next_labels(ordered, counts)
        if following == counts:
            break
        counts = following
    return sum(counts)
