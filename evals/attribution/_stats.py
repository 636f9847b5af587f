"""Small statistics for attribution: Student-t quantiles and mean confidence intervals (no scipy needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

from mdap.errors import ConfigError

__all__ = ["check_confidence", "mean_ci", "student_t_quantile"]

_NORMAL_BEYOND = 1000
"""Degrees of freedom above which the normal quantile is used (off by < 0.1%)."""


def check_confidence(confidence: float) -> float:
    """Return ``confidence`` if it is a probability in (0, 1), else raise ConfigError."""
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")
    return confidence


def _t_central(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` >= 1, from the finite series in cos(theta)."""
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:
        term = total = 1.0
        for j in range(1, (df - 2) // 2 + 1):
            term *= (2 * j - 1) / (2 * j) * c2
            total += term
        return s * total
    if df == 1:
        return 2.0 * theta / math.pi
    term = total = math.cos(theta)
    for j in range(1, (df - 3) // 2 + 1):
        term *= (2 * j) / (2 * j + 1) * c2
        total += term
    return 2.0 / math.pi * (theta + s * total)


def student_t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` degrees of freedom.

    Raises:
        ConfigError: p outside (0, 1) or df < 1.
    """
    if not 0.0 < p < 1.0:
        raise ConfigError(f"a quantile needs p in (0, 1), got {p!r}")
    if df < 1:
        raise ConfigError(f"Student's t needs df >= 1, got {df}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    if df > _NORMAL_BEYOND:
        return NormalDist().inv_cdf(p)
    want = 2.0 * p - 1.0
    lo, hi = 0.0, 2.0
    while _t_central(hi, df) < want:
        lo, hi = hi, hi * 2.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _t_central(mid, df) < want:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean of ``values`` and its two-sided Student-t confidence interval.

    Returns:
        ``(mean, low, high)``; ``low`` and ``high`` are None for a single value (no spread to measure).

    Raises:
        ConfigError: no values, or confidence outside (0, 1).
    """
    check_confidence(confidence)
    n = len(values)
    if n == 0:
        raise ConfigError("a mean needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None, None
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = student_t_quantile(0.5 + confidence / 2.0, n - 1) * math.sqrt(var / n)
    return mean, mean - half, mean + half
