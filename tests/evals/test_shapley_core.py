"""The functional Shapley core on games with known answers, the axioms, Banzhaf, sampling, bad input."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

import pytest

from mdap.errors import ConfigError
from mdap.evals.attribution._stats import mean_ci, student_t_quantile
from mdap.evals.attribution.shapley import (
    banzhaf_values,
    interaction_indices,
    sampled_shapley_values,
    shapley_values,
)

Value = Callable[[frozenset[str]], float]


def _by_definition(players: list[str], value: Value) -> dict[str, float]:
    """Shapley by its definition: the mean marginal contribution over every order of the players."""
    totals = dict.fromkeys(players, 0.0)
    orders = list(itertools.permutations(players))
    for order in orders:
        seen: set[str] = set()
        for p in order:
            totals[p] += value(frozenset(seen | {p})) - value(frozenset(seen))
            seen.add(p)
    return {p: t / len(orders) for p, t in totals.items()}


def _random_game(players: list[str], seed: int) -> Value:
    rng = random.Random(seed)
    table = {
        frozenset(c): rng.uniform(-1, 3) for r in range(len(players) + 1) for c in itertools.combinations(players, r)
    }
    return table.__getitem__


def test_additive_game_pays_each_player_its_own_contribution() -> None:
    own = {"planner": 0.3, "voter": 1.25, "model": -0.4, "adapter": 0.0}
    players = list(own)

    def v(s: frozenset[str]) -> float:
        return 7.0 + sum(own[p] for p in s)

    for values in (shapley_values(players, v), banzhaf_values(players, v)):
        assert values == pytest.approx(own, abs=1e-12)
    assert all(i == pytest.approx(0.0, abs=1e-12) for i in interaction_indices(players, v).values())


@pytest.mark.parametrize(
    ("carrier", "n"), [({"a"}, 3), ({"a", "b"}, 4), ({"a", "b", "c"}, 5), ({"a", "c", "d", "e"}, 5)]
)
def test_unanimity_game_splits_equally_among_the_carrier(carrier: set[str], n: int) -> None:
    players = ["a", "b", "c", "d", "e"][:n]

    def v(s: frozenset[str]) -> float:
        return 2.0 if carrier <= s else 0.0

    phi = shapley_values(players, v)
    assert phi == pytest.approx({p: (2.0 / len(carrier) if p in carrier else 0.0) for p in players})
    beta = banzhaf_values(players, v)  # Banzhaf: the carrier player is pivotal in 1 of 2^(|T|-1) of its sets
    assert beta == pytest.approx({p: (2.0 / 2 ** (len(carrier) - 1) if p in carrier else 0.0) for p in players})


def test_glove_game() -> None:
    left, right = {"l1"}, {"r1", "r2"}

    def v(s: frozenset[str]) -> float:
        return float(min(len(s & left), len(s & right)))

    players = ["l1", "r1", "r2"]
    assert shapley_values(players, v) == pytest.approx({"l1": 2 / 3, "r1": 1 / 6, "r2": 1 / 6})
    assert banzhaf_values(players, v) == pytest.approx({"l1": 3 / 4, "r1": 1 / 4, "r2": 1 / 4})
    inter = interaction_indices(players, v)
    assert inter[("l1", "r1")] == pytest.approx(0.5)  # complements: a pair makes a glove
    assert inter[("r1", "r2")] == pytest.approx(-0.5)  # substitutes: either right glove will do


def test_symmetric_game_gives_equal_shares() -> None:
    players = [f"p{i}" for i in range(6)]

    def v(s: frozenset[str]) -> float:
        return math.sqrt(len(s)) + 0.5 * len(s) ** 2

    phi = shapley_values(players, v)
    share = (v(frozenset(players)) - v(frozenset())) / len(players)
    assert phi == pytest.approx(dict.fromkeys(players, share))


@pytest.mark.parametrize("seed", range(5))
def test_random_games_match_the_definition_and_are_efficient(seed: int) -> None:
    players = ["a", "b", "c", "d", "e"][: 2 + seed % 4]
    v = _random_game(players, seed)
    phi = shapley_values(players, v)
    assert phi == pytest.approx(_by_definition(players, v), abs=1e-12)
    assert math.fsum(phi.values()) == pytest.approx(v(frozenset(players)) - v(frozenset()), abs=1e-12)


def test_dummy_player_gets_zero_and_no_interaction() -> None:
    base = _random_game(["a", "b", "c"], 11)
    players = ["a", "dummy", "b", "c"]

    def v(s: frozenset[str]) -> float:
        return base(s - {"dummy"})

    assert shapley_values(players, v)["dummy"] == pytest.approx(0.0, abs=1e-12)
    assert banzhaf_values(players, v)["dummy"] == pytest.approx(0.0, abs=1e-12)
    inter = interaction_indices(players, v)
    assert all(abs(x) < 1e-12 for pair, x in inter.items() if "dummy" in pair)
    assert any(abs(x) > 1e-6 for pair, x in inter.items() if "dummy" not in pair)


def test_symmetric_players_get_equal_values_in_an_asymmetric_game() -> None:
    weights = {"a": 1.0, "b": 1.0, "c": 3.0}

    def v(s: frozenset[str]) -> float:  # weighted majority: win with weight >= 3.5; a and b are interchangeable
        return 1.0 if sum(weights[p] for p in s) >= 3.5 else 0.0

    phi = shapley_values(list(weights), v)
    assert phi["a"] == pytest.approx(phi["b"])
    assert phi["c"] > phi["a"]
    assert phi == pytest.approx({"a": 1 / 6, "b": 1 / 6, "c": 2 / 3})


def test_banzhaf_differs_from_shapley_where_it_should() -> None:
    players = ["a", "b", "c"]

    def unanimity(s: frozenset[str]) -> float:
        return 1.0 if len(s) == 3 else 0.0

    phi, beta = shapley_values(players, unanimity), banzhaf_values(players, unanimity)
    assert phi == pytest.approx(dict.fromkeys(players, 1 / 3))
    assert beta == pytest.approx(dict.fromkeys(players, 1 / 4))
    assert sum(beta.values()) != pytest.approx(1.0)  # Banzhaf is not efficient

    # ...but both agree on two-player games and on additive games, whatever the values
    two = _random_game(["x", "y"], 3)
    assert banzhaf_values(["x", "y"], two) == pytest.approx(shapley_values(["x", "y"], two))


def test_each_coalition_is_evaluated_once() -> None:
    calls: list[frozenset[str]] = []

    def v(s: frozenset[str]) -> float:
        calls.append(s)
        return float(len(s))

    shapley_values(["a", "b", "c", "d"], v)
    assert len(calls) == 16
    assert len(set(calls)) == 16


def test_interaction_of_a_pure_pair_term() -> None:
    players = ["a", "b", "c", "d"]

    def v(s: frozenset[str]) -> float:
        return 0.7 * len(s) + (1.5 if {"a", "b"} <= s else 0.0) - (0.4 if {"c", "d"} <= s else 0.0)

    inter = interaction_indices(players, v)
    assert inter[("a", "b")] == pytest.approx(1.5)
    assert inter[("c", "d")] == pytest.approx(-0.4)
    assert inter[("a", "c")] == pytest.approx(0.0, abs=1e-12)
    assert list(inter) == [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")]
    assert interaction_indices(["solo"], lambda s: 1.0) == {}


def test_sampling_converges_to_the_exact_values_within_its_ci_on_ten_players() -> None:
    rng = random.Random(7)
    players = [f"m{i}" for i in range(10)]
    weight = {p: rng.uniform(0, 1) for p in players}
    pair_bonus = {(players[0], players[1]): 0.8, (players[2], players[3]): -0.6, (players[4], players[9]): 0.5}

    def v(s: frozenset[str]) -> float:
        total = sum(weight[p] for p in s)
        total += sum(b for (a, c), b in pair_bonus.items() if a in s and c in s)
        return total + (1.0 if len(s) >= 7 else 0.0)

    exact = shapley_values(players, v)
    coarse = sampled_shapley_values(players, v, target_se=0.05, confidence=0.99, seed=1)
    fine = sampled_shapley_values(players, v, target_se=0.005, confidence=0.99, seed=1)
    for est in (coarse, fine):
        assert est.stopped == "target_se"
        for p in players:
            assert est[p].se <= (0.05 if est is coarse else 0.005)
            assert est[p].low <= exact[p] <= est[p].high, (p, exact[p], est[p])
    assert fine.permutations > coarse.permutations
    err_coarse = max(abs(coarse[p].value - exact[p]) for p in players)
    err_fine = max(abs(fine[p].value - exact[p]) for p in players)
    assert err_fine < err_coarse
    assert fine.means == {p: fine[p].value for p in players}


def test_sampling_stops_at_its_evaluation_budget() -> None:
    calls = 0
    players = [f"p{i}" for i in range(12)]

    def v(s: frozenset[str]) -> float:
        nonlocal calls
        calls += 1
        return float(len(s) ** 2)

    est = sampled_shapley_values(players, v, max_evaluations=200, seed=3)
    assert est.stopped == "budget"
    assert calls == est.evaluations <= 200
    assert est.permutations >= 2
    # a symmetric game: every estimate is unbiased for the equal share and every interval holds it
    share = 144.0 / 12
    assert all(e.low <= share <= e.high for e in est.values())


def test_sampling_with_zero_variance_hits_any_target() -> None:
    est = sampled_shapley_values(["a", "b", "c"], lambda s: 2.0 * len(s), target_se=1e-9, min_permutations=5)
    assert est.permutations == 5
    assert {p: e.value for p, e in est.items()} == pytest.approx({"a": 2.0, "b": 2.0, "c": 2.0})
    assert all(e.se == 0.0 and e.low == e.high == e.value for e in est.values())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: shapley_values([], lambda s: 0.0), "at least one player"),
        (lambda: shapley_values(["a", "a"], lambda s: 0.0), "distinct"),
        (lambda: shapley_values("ab", lambda s: 0.0), "list of names"),
        (lambda: banzhaf_values(["a", ""], lambda s: 0.0), "non-empty strings"),
        (lambda: shapley_values(["a"], lambda s: math.nan), "not a finite number"),
        (lambda: interaction_indices(["a", "b"], lambda s: "x"), "not a finite number"),  # type: ignore
        (lambda: shapley_values([f"p{i}" for i in range(21)], lambda s: 0.0), "sampled_shapley_values"),
        (lambda: sampled_shapley_values(["a"], lambda s: 0.0), "target_se, max_evaluations"),
        (lambda: sampled_shapley_values(["a"], lambda s: 0.0, target_se=0.0), "target_se must be > 0"),
        (lambda: sampled_shapley_values(["a", "b"], lambda s: 0.0, max_evaluations=2), "two permutations"),
        (lambda: sampled_shapley_values(["a"], lambda s: 0.0, target_se=1, confidence=1.5), "confidence"),
    ],
)
def test_bad_input_is_a_config_error_that_says_what_is_wrong(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()


def test_a_value_function_that_raises_propagates_unchanged() -> None:
    def v(s: frozenset[str]) -> float:
        raise ZeroDivisionError("scorer broke")

    with pytest.raises(ZeroDivisionError, match="scorer broke"):
        shapley_values(["a"], v)


def test_student_t_quantiles_and_mean_ci() -> None:
    known = {(1, 0.975): 12.7062, (2, 0.975): 4.3027, (4, 0.975): 2.7764, (10, 0.995): 3.1693, (30, 0.975): 2.0423}
    for (df, p), t in known.items():
        assert student_t_quantile(p, df) == pytest.approx(t, abs=1e-4)
        assert student_t_quantile(1 - p, df) == pytest.approx(-t, abs=1e-4)
    assert student_t_quantile(0.975, 5000) == pytest.approx(1.95996, abs=1e-4)
    mean, low, high = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0
    assert high is not None and low is not None
    assert high - mean == pytest.approx(2.7764 * math.sqrt(2.5 / 5), abs=1e-3)
    assert mean_ci([4.0]) == (4.0, None, None)
    with pytest.raises(ConfigError, match="at least one value"):
        mean_ci([])
