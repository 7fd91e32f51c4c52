"""The Wilson score interval of a binomial proportion (win rates, accuracies)."""

from __future__ import annotations

import math

from ..errors import ArgumentError

Z95 = 1.959964
"""The standard normal quantile of a two-sided 95% interval."""


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``n`` (95% by default).

    Unlike the normal ("Wald") interval it stays inside [0, 1] and does not collapse to a
    point at 0 or ``n`` successes, which matters for the small samples of an evaluation run.

    Args:
        successes (`int`): wins (or correct answers), 0 to ``n``.
        n (`int`): trials; with 0 trials nothing is known and the interval is (0.0, 1.0).
        z (`float`, defaults to 1.959964): the normal quantile (1.959964 for 95%).

    Returns:
        `tuple[float, float]`: the lower and upper bound.

    Raises:
        `ValueError`: ``n`` is negative or ``successes`` is not between 0 and ``n``.

    Example:
        >>> [round(x, 4) for x in wilson_interval(5, 10)]
        [0.2366, 0.7634]
    """
    if n < 0 or not 0 <= successes <= n:
        raise ArgumentError(f"wilson_interval needs 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(successes: int, n: int) -> float:
    """``successes / n``, or 0.0 when ``n`` is 0."""
    return successes / n if n else 0.0
