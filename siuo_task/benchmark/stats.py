"""Confidence intervals for proportions."""

from __future__ import annotations

import math
from typing import Any

Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion, as fractions in [0, 1].

    Chosen over the normal approximation because SIUO's cells are small (16-21 items per
    category) and rates near 0 or 1 are common; it is closed-form, so reproducible.

    Args:
        successes: number of successes.
        n: number of trials; (0.0, 1.0) is returned when n is 0.
        z: the normal quantile (1.96 for 95%).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar test: a binomial test of the discordant pairs at p = 1/2.

    Args:
        only_first: pairs where only the first system succeeded (b).
        only_second: pairs where only the second system succeeded (c).
    """
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference(pairs: list[tuple[bool, bool]], z: float = Z_95) -> tuple[float, float, float]:
    """Difference of two paired proportions (first - second) with its Wald 95% interval.

    Uses the paired variance ((b + c) - (b - c)^2 / n) / n^2, where b and c count the
    discordant pairs, so items both systems got right or wrong add no spread.

    Returns:
        (difference, low, high) as fractions.
    """
    n = len(pairs)
    if n == 0:
        raise ValueError("paired_difference needs at least one pair")
    b = sum(1 for first, second in pairs if first and not second)
    c = sum(1 for first, second in pairs if second and not first)
    diff = (b - c) / n
    se = math.sqrt(max((b + c) - (b - c) ** 2 / n, 0.0)) / n
    return diff, max(-1.0, diff - z * se), min(1.0, diff + z * se)


def cohen_kappa(pairs: list[tuple[bool, bool]], z: float = Z_95) -> tuple[float | None, float | None, float | None]:
    """Cohen's kappa for two raters on a binary label, with an approximate 95% interval.

    The interval uses Cohen's (1960) large-sample standard error
    sqrt(po (1 - po) / (n (1 - pe)^2)). Kappa is undefined (None) when chance agreement is 1.

    Returns:
        (kappa, low, high).
    """
    n = len(pairs)
    if n == 0:
        return None, None, None
    po = sum(1 for a, b in pairs if a == b) / n
    first_yes = sum(1 for a, _ in pairs if a) / n
    second_yes = sum(1 for _, b in pairs if b) / n
    pe = first_yes * second_yes + (1 - first_yes) * (1 - second_yes)
    if pe >= 1.0:
        return None, None, None
    kappa = (po - pe) / (1 - pe)
    se = math.sqrt(po * (1 - po) / (n * (1 - pe) ** 2))
    return kappa, max(-1.0, kappa - z * se), min(1.0, kappa + z * se)


def agreement_of_pairs(pairs: list[tuple[bool, bool]], first: str, second: str, share: str) -> dict[str, Any]:
    """Two raters' agreement on paired binary labels: n, percent agreeing (under ``share``), Cohen's
    kappa with its 95% interval, and the confusion matrix keyed ``<first>_<bool>_<second>_<bool>``.

    Args:
        pairs: (first rater's label, second rater's label) per compared case.
        first: the first rater's name in the confusion keys (e.g. "judge", "a").
        second: the second rater's name (e.g. "human", "b").
        share: the key of the percent agreeing (e.g. "accuracy", "agreement").
    """
    kappa, low, high = cohen_kappa(pairs)
    n = len(pairs)
    confusion = {
        f"{first}_{str(x).lower()}_{second}_{str(y).lower()}": sum(1 for a, b in pairs if bool(a) == x and bool(b) == y)
        for x in (True, False)
        for y in (True, False)
    }
    return {
        "n": n,
        share: round(100 * sum(1 for a, b in pairs if a == b) / n, 2) if n else None,
        "kappa": None if kappa is None else _rounded(kappa),
        "kappa_ci95": None if low is None or high is None else [_rounded(low), _rounded(high)],
        "confusion": confusion,
    }


def _rounded(value: float) -> float:
    # Adding 0.0 turns a rounded -0.0 into 0.0, which is what a reader expects to see printed.
    return round(value, 4) + 0.0
