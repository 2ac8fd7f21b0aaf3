"""Confidence intervals for proportions."""

from __future__ import annotations

import math

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
