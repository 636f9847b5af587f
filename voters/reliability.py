"""Reliability math of first-to-ahead-by-k voting (MAKER, section 3).

With per-sample correctness ``p > 1/2`` and wrong samples that agree with each other (the worst case, a race
between two answers), a vote with margin ``k`` decides the right answer with probability
``p^k / (p^k + (1-p)^k)`` -- gambler's ruin. So a step is wrong with probability ``1 / (1 + (p/(1-p))^k)``,
which equals ``r^k / (1 + r^k)`` with ``r = (1-p)/p``, and ``k`` only has to grow with ``ln(steps)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mdap.errors import ConfigError

__all__ = [
    "PEstimate",
    "estimate_p",
    "expected_cost",
    "expected_samples",
    "k_min",
    "step_error",
    "task_success",
]


def _check_p(p: float) -> float:
    if not 0.0 <= p <= 1.0 or math.isnan(p):
        raise ConfigError(f"per-sample correctness p must be in [0, 1], got {p!r}")
    return p


def _check_k(k: int) -> int:
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    return k


def step_error(p: float, k: int) -> float:
    """Probability that a first-to-ahead-by-k vote decides a wrong answer (two-answer race).

    Args:
        p: probability that one valid sample is right.
        k: the vote margin.
    """
    _check_p(p), _check_k(k)
    if p == 1.0:
        return 0.0
    if p == 0.0:
        return 1.0
    r = (1.0 - p) / p
    rk = r**k
    return rk / (1.0 + rk)


def task_success(p: float, k: int, steps: int) -> float:
    """Probability that all ``steps`` votes decide right: ``(1 - step_error(p, k)) ** steps``."""
    if steps < 0:
        raise ConfigError(f"steps must be >= 0, got {steps}")
    return (1.0 - step_error(p, k)) ** steps


def k_min(p: float, steps: int, target: float = 0.95) -> int:
    """Smallest margin k with ``task_success(p, k, steps) >= target``.

    ``k_min = ceil(ln(target^(-1/steps) - 1) / ln r)`` with ``r = (1-p)/p`` (at least 1).

    Raises:
        ConfigError: p <= 1/2 (voting cannot make a step reliable: more samples make it worse), steps < 1,
            or target outside (0, 1).
    """
    _check_p(p)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if not 0.0 < target < 1.0:
        raise ConfigError(f"target must be in (0, 1), got {target}")
    if p <= 0.5:
        raise ConfigError(
            f"per-sample correctness p={p:.4f} is not above 1/2: voting cannot make the steps reliable; "
            "improve the model or the decomposition first"
        )
    if p == 1.0:
        return 1
    eps = math.expm1(-math.log(target) / steps)  # target^(-1/steps) - 1, without cancellation
    k = math.ceil(math.log(eps) / math.log((1.0 - p) / p) - 1e-12)
    return max(1, k)


def expected_samples(p: float, k: int, red_flag_rate: float = 0.0) -> float:
    """Expected samples a first-to-ahead-by-k vote draws per step.

    Gambler's ruin duration of a race between the right answer and one wrong answer, started level with
    absorbing leads of +-k: ``k/(2p-1) * (1 - r^k)/(1 + r^k)`` (``k^2`` at p = 1/2). When wrong samples
    disagree among themselves the vote ends a little sooner, so this is an upper bound for the valid votes.
    Red-flagged samples are redrawn, dividing by ``1 - red_flag_rate``.
    """
    _check_p(p), _check_k(k)
    if not 0.0 <= red_flag_rate < 1.0:
        raise ConfigError(f"red_flag_rate must be in [0, 1), got {red_flag_rate}")
    if p in (0.0, 1.0):
        valid = float(k)
    elif abs(p - 0.5) < 1e-12:
        valid = float(k * k)
    else:
        r = (1.0 - p) / p
        rk = r**k
        valid = k / (2.0 * p - 1.0) * (1.0 - rk) / (1.0 + rk)
    return valid / (1.0 - red_flag_rate)


def expected_cost(p: float, k: int, steps: int, cost_per_sample: float = 1.0, red_flag_rate: float = 0.0) -> float:
    """Expected total cost of a run: ``steps * expected_samples(p, k) * cost_per_sample``."""
    if steps < 0:
        raise ConfigError(f"steps must be >= 0, got {steps}")
    return steps * expected_samples(p, k, red_flag_rate) * cost_per_sample


@dataclass(frozen=True, slots=True)
class PEstimate:
    """An estimate of per-sample correctness from counted votes.

    Attributes:
        p: posterior mean under a Jeffreys prior, ``(correct + 1/2) / (total + 1)``.
        low, high: 95% Wilson score interval.
        correct, total: the counts it was estimated from.
    """

    p: float
    low: float
    high: float
    correct: int
    total: int


def estimate_p(correct: int, total: int, z: float = 1.96) -> PEstimate:
    """Estimate per-sample correctness ``p`` from ``correct`` right votes out of ``total`` valid ones.

    Raises:
        ConfigError: negative counts, correct > total, or no votes at all.
    """
    if total < 1 or correct < 0 or correct > total:
        raise ConfigError(f"need 0 <= correct <= total and total >= 1, got correct={correct}, total={total}")
    p = (correct + 0.5) / (total + 1.0)
    phat = correct / total
    denom = 1.0 + z * z / total
    centre = (phat + z * z / (2 * total)) / denom
    half = z * math.sqrt(phat * (1 - phat) / total + z * z / (4 * total * total)) / denom
    return PEstimate(p, max(0.0, centre - half), min(1.0, centre + half), correct, total)
