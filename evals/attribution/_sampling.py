"""Permutation-sampling Shapley estimates with confidence intervals, for games too large to enumerate."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from mdap.errors import ConfigError

from ._shapley_input import ValueFn, check_players, evaluate
from ._stats import check_confidence, student_t_quantile

__all__ = ["SampledShapley", "ShapleyEstimate", "sampled_shapley_values"]

Stop = Literal["target_se", "budget", "max_permutations"]


@dataclass(frozen=True, slots=True)
class ShapleyEstimate:
    """A sampled Shapley value.

    Attributes:
        value: the estimate (mean marginal contribution over the sampled permutations).
        se: its standard error.
        low: lower end of the confidence interval.
        high: upper end of the confidence interval.
        permutations: permutations the estimate averages.
    """

    value: float
    se: float
    low: float
    high: float
    permutations: int


@dataclass(frozen=True, slots=True)
class SampledShapley(Mapping[str, ShapleyEstimate]):
    """Sampled Shapley estimates, a mapping ``{player: ShapleyEstimate}``, and how the sampling ended.

    Attributes:
        estimates: the estimate of each player, in the order of the players.
        permutations: permutations sampled.
        evaluations: distinct coalitions evaluated (each at most once).
        stopped: why sampling stopped: ``"target_se"`` (every SE at or below the target), ``"budget"`` (the
            next evaluation would have exceeded ``max_evaluations``; the unfinished permutation is dropped) or
            ``"max_permutations"``.
        confidence: the confidence level of the intervals.
    """

    estimates: dict[str, ShapleyEstimate]
    permutations: int
    evaluations: int
    stopped: Stop
    confidence: float

    def __getitem__(self, player: str) -> ShapleyEstimate:
        return self.estimates[player]

    def __iter__(self) -> Iterator[str]:
        return iter(self.estimates)

    def __len__(self) -> int:
        return len(self.estimates)

    @property
    def means(self) -> dict[str, float]:
        """``{player: estimate}`` without the intervals."""
        return {p: e.value for p, e in self.estimates.items()}


class _OverBudget(Exception):
    """The next evaluation would exceed the budget (internal control flow)."""


def _check_args(
    target_se: float | None, max_evaluations: int | None, max_permutations: int, min_permutations: int
) -> None:
    if target_se is None and max_evaluations is None:
        raise ConfigError("give target_se, max_evaluations or both, so sampling knows when to stop")
    if target_se is not None and not target_se > 0:
        raise ConfigError(f"target_se must be > 0, got {target_se!r}")
    if max_evaluations is not None and max_evaluations < 1:
        raise ConfigError(f"max_evaluations must be >= 1, got {max_evaluations!r}")
    if min_permutations < 2:
        raise ConfigError(f"min_permutations must be >= 2 (a standard error needs two), got {min_permutations}")
    if max_permutations < min_permutations:
        raise ConfigError(f"max_permutations ({max_permutations}) must be >= min_permutations ({min_permutations})")


def sampled_shapley_values(
    players: Sequence[str],
    value: ValueFn,
    *,
    target_se: float | None = None,
    max_evaluations: int | None = None,
    max_permutations: int = 100_000,
    min_permutations: int = 30,
    confidence: float = 0.95,
    seed: int = 0,
) -> SampledShapley:
    """Estimate Shapley values by averaging marginal contributions over random orders of the players.

    Each sampled permutation adds every player in turn and credits each with the change in value it makes;
    coalitions are cached, so each is evaluated at most once. Sampling stops when every player's standard
    error is at most ``target_se`` (after ``min_permutations``), when the next evaluation would exceed
    ``max_evaluations``, or after ``max_permutations``. The estimates are unbiased; the intervals are
    Student-t intervals over the permutations.

    Args:
        players: distinct player names.
        value: the game: coalition (frozenset of names) -> number.
        target_se: stop once every standard error is at most this.
        max_evaluations: hard budget of distinct coalitions evaluated.
        max_permutations: stop after this many permutations whatever the standard errors.
        min_permutations: never stop for ``target_se`` before this many permutations.
        confidence: confidence level of the intervals.
        seed: seed of the permutation order; the result is reproducible from it.

    Raises:
        ConfigError: no stopping rule, bad arguments, bad players, a value that is not a finite number, or a
            budget too small for two whole permutations.
    """
    names = check_players(players)
    check_confidence(confidence)
    _check_args(target_se, max_evaluations, max_permutations, min_permutations)
    rng = random.Random(seed)
    cache: dict[frozenset[str], float] = {}

    def v(coalition: frozenset[str]) -> float:
        got = cache.get(coalition)
        if got is None:
            if max_evaluations is not None and len(cache) >= max_evaluations:
                raise _OverBudget
            got = cache[coalition] = evaluate(value, coalition)
        return got

    n = len(names)
    means = [0.0] * n  # running mean and sum of squared deviations (Welford) of each player's marginals
    m2 = [0.0] * n
    m = 0
    stopped: Stop = "max_permutations"
    order = list(range(n))
    while m < max_permutations:
        rng.shuffle(order)
        marginals = [0.0] * n
        try:
            members: set[str] = set()
            before = v(frozenset())
            for i in order:
                members.add(names[i])
                after = v(frozenset(members))
                marginals[i] = after - before
                before = after
        except _OverBudget:
            stopped = "budget"
            break
        m += 1
        for i, x in enumerate(marginals):
            delta = x - means[i]
            means[i] += delta / m
            m2[i] += delta * (x - means[i])
        if target_se is not None and m >= min_permutations and max(_se(q, m) for q in m2) <= target_se:
            stopped = "target_se"
            break
    if m < 2:
        raise ConfigError(
            f"a budget of {max_evaluations} evaluations did not finish two permutations of {n} players "
            f"(each needs up to {n + 1} evaluations); raise max_evaluations"
        )
    t = student_t_quantile(0.5 + confidence / 2.0, m - 1)
    estimates = {}
    for i, name in enumerate(names):
        mean, se = means[i], _se(m2[i], m)
        estimates[name] = ShapleyEstimate(mean, se, mean - t * se, mean + t * se, m)
    return SampledShapley(estimates, m, len(cache), stopped, confidence)


def _se(m2: float, m: int) -> float:
    """Standard error of a mean of ``m`` values whose squared deviations from the mean sum to ``m2``."""
    return math.sqrt(m2 / (m - 1) / m) if m >= 2 else math.inf
