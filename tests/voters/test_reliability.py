"""Reliability math against the MAKER paper's table and its own identities."""

from __future__ import annotations

import math

import pytest

from mdap.errors import ConfigError
from mdap.voters import estimate_p, expected_cost, expected_samples, k_min, step_error, task_success

MAKER_STEPS = 1_048_575


@pytest.mark.parametrize(
    ("error", "k"),
    [(0.0022, 3), (0.0040, 4), (0.0358, 6), (0.1839, 12), (0.2342, 15), (0.3571, 29)],
)
def test_k_min_matches_maker_table(error: float, k: int) -> None:
    assert k_min(1 - error, MAKER_STEPS, 0.95) == k


@pytest.mark.parametrize("error", [0.0022, 0.0358, 0.3571])
def test_k_min_is_the_smallest_k_reaching_the_target(error: float) -> None:
    p = 1 - error
    k = k_min(p, MAKER_STEPS, 0.95)
    assert task_success(p, k, MAKER_STEPS) >= 0.95
    assert task_success(p, k - 1, MAKER_STEPS) < 0.95


def test_step_error_is_gamblers_ruin() -> None:
    p, k = 0.8, 3
    assert step_error(p, k) == pytest.approx((1 - p) ** k / (p**k + (1 - p) ** k))
    assert step_error(p, 1) == pytest.approx(1 - p)  # k=1 is a single sample
    assert step_error(0.5, 7) == pytest.approx(0.5)
    assert step_error(1.0, 2) == 0.0
    assert step_error(0.998, 4) < step_error(0.998, 3) < step_error(0.998, 2)


def test_task_success_compounds_per_step() -> None:
    assert task_success(0.9, 1, 10) == pytest.approx(0.9**10)
    assert task_success(0.9, 2, 0) == 1.0


def test_expected_samples() -> None:
    assert expected_samples(1.0, 3) == 3.0
    assert expected_samples(0.5, 3) == 9.0  # k^2 for a fair race
    assert 3.0 < expected_samples(0.998, 3) < 3.02
    assert expected_samples(0.998, 3, red_flag_rate=0.5) == pytest.approx(2 * expected_samples(0.998, 3))
    assert expected_cost(0.998, 3, 100, cost_per_sample=2.0) == pytest.approx(200 * expected_samples(0.998, 3))


def test_expected_samples_matches_a_simulated_two_answer_race() -> None:
    import random

    rng = random.Random(1)
    p, k, trials = 0.7, 3, 20_000
    total = 0
    for _ in range(trials):
        lead = n = 0
        while abs(lead) < k:
            lead += 1 if rng.random() < p else -1
            n += 1
        total += n
    assert total / trials == pytest.approx(expected_samples(p, k), rel=0.03)


def test_estimate_p() -> None:
    est = estimate_p(99, 100)
    assert est.low < 0.99 < est.high
    assert est.p == pytest.approx(99.5 / 101)
    assert estimate_p(0, 10).p > 0.0  # never exactly 0 or 1 from finite counts
    with pytest.raises(ConfigError, match="correct"):
        estimate_p(5, 3)
    with pytest.raises(ConfigError):
        estimate_p(0, 0)


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_k_min_refuses_when_voting_cannot_work(p: float) -> None:
    with pytest.raises(ConfigError, match="not above 1/2"):
        k_min(p, 100)


def test_bad_arguments_name_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="k must be >= 1"):
        step_error(0.9, 0)
    with pytest.raises(ConfigError, match="p must be in"):
        step_error(1.5, 2)
    with pytest.raises(ConfigError, match="target"):
        k_min(0.9, 100, 1.0)
    with pytest.raises(ConfigError, match="steps"):
        k_min(0.9, 0)
    assert math.isfinite(k_min(0.999999, 10))
