"""Shapley attribution, the plain functional core: which player (module) earned the value of a game.

A game is a list of ``players`` (names) and a ``value`` callable that maps a coalition (a frozenset of names:
the modules using their *test* variant) to a number. Everything here works on that pair and nothing else::

    from mdap.evals.attribution.shapley import shapley_values
    shapley_values(["a", "b"], lambda s: len(s) ** 2)   # {'a': 2.0, 'b': 2.0}

- :func:`shapley_values`: a player's average marginal contribution over all orders in which the coalition can
  form; coalition ``S`` (not holding ``i``) weighs ``|S|! (n-|S|-1)! / n!``. The values sum to
  ``v(N) - v(empty)`` (efficiency).
- :func:`banzhaf_values`: the plain average of the marginal contributions over all ``2^(n-1)`` coalitions;
  not efficient, and it differs from Shapley as soon as a coalition of three or more players matters.
- :func:`interaction_indices`: the pairwise Shapley interaction index; > 0 when two players help each other
  (complements), < 0 when each makes the other less needed (substitutes).
- :func:`sampled_shapley_values`: permutation-sampling estimates with confidence intervals for games too large
  to enumerate.

The exact functions call ``value`` once per coalition (2^n calls) and are limited to
:data:`MAX_EXACT_PLAYERS` players.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from mdap.errors import ConfigError

from ._sampling import SampledShapley, ShapleyEstimate, sampled_shapley_values
from ._shapley_input import ValueFn, check_players, evaluate

__all__ = [
    "MAX_EXACT_PLAYERS",
    "SampledShapley",
    "ShapleyEstimate",
    "ValueFn",
    "banzhaf_values",
    "interaction_indices",
    "sampled_shapley_values",
    "shapley_values",
]

MAX_EXACT_PLAYERS = 20
"""Exact attribution enumerates 2^n coalitions; above this many players use :func:`sampled_shapley_values`."""


def _coalition_table(players: Sequence[str], value: ValueFn) -> list[float]:
    """``value`` of every coalition, indexed by bitmask (bit ``i`` set = ``players[i]`` in the coalition).

    Raises:
        ConfigError: bad players (empty, duplicated, not strings, more than MAX_EXACT_PLAYERS) or a value
            that is not a finite number.
    """
    names = check_players(players)
    if len(names) > MAX_EXACT_PLAYERS:
        raise ConfigError(
            f"exact attribution of {len(names)} players needs 2^{len(names)} coalitions; "
            f"use sampled_shapley_values for more than {MAX_EXACT_PLAYERS} players"
        )
    return [
        evaluate(value, frozenset(names[i] for i in range(len(names)) if mask >> i & 1))
        for mask in range(1 << len(names))
    ]


def _weighted_marginals(n: int, table: list[float], weight: Callable[[int], float]) -> list[float]:
    out = []
    for i in range(n):
        bit = 1 << i
        total = math.fsum(
            weight(mask.bit_count()) * (table[mask | bit] - table[mask]) for mask in range(1 << n) if not mask & bit
        )
        out.append(total)
    return out


def shapley_values(players: Sequence[str], value: ValueFn) -> dict[str, float]:
    """Exact Shapley value of each player.

    Args:
        players: distinct player names.
        value: the game: coalition (frozenset of names) -> number; called once per coalition.

    Returns:
        ``{player: value}`` in the order of ``players``; the values sum to ``v(all) - v(empty)``.

    Raises:
        ConfigError: bad players or a value that is not a finite number.
    """
    names = check_players(players)
    table = _coalition_table(names, value)
    n = len(names)
    fact = [math.factorial(j) for j in range(n + 1)]
    phi = _weighted_marginals(n, table, lambda s: fact[s] * fact[n - s - 1] / fact[n])
    return dict(zip(names, phi, strict=True))


def banzhaf_values(players: Sequence[str], value: ValueFn) -> dict[str, float]:
    """Exact (non-normalised) Banzhaf value of each player: its mean marginal contribution over all coalitions.

    Args:
        players: distinct player names.
        value: the game; called once per coalition.

    Returns:
        ``{player: value}`` in the order of ``players`` (they need not sum to ``v(all) - v(empty)``).

    Raises:
        ConfigError: bad players or a value that is not a finite number.
    """
    names = check_players(players)
    table = _coalition_table(names, value)
    n = len(names)
    w = 1.0 / (1 << (n - 1))
    return dict(zip(names, _weighted_marginals(n, table, lambda _s: w), strict=True))


def interaction_indices(players: Sequence[str], value: ValueFn) -> dict[tuple[str, str], float]:
    """Pairwise Shapley interaction index of every pair of players.

    ``I(a, b) = sum over S without a, b of |S|! (n-|S|-2)! / (n-1)! * (v(S+a+b) - v(S+a) - v(S+b) + v(S))``.
    Positive: a and b are worth more together than apart; negative: they substitute for each other.

    Returns:
        ``{(a, b): index}`` for every pair, ``a`` before ``b`` in the order of ``players`` (empty for one player).

    Raises:
        ConfigError: bad players or a value that is not a finite number.
    """
    names = check_players(players)
    table = _coalition_table(names, value)
    n = len(names)
    if n < 2:
        return {}
    fact = [math.factorial(j) for j in range(n + 1)]
    out: dict[tuple[str, str], float] = {}
    for a in range(n):
        for b in range(a + 1, n):
            ba, bb = 1 << a, 1 << b
            pair = ba | bb
            out[names[a], names[b]] = math.fsum(
                fact[s] * fact[n - s - 2] / fact[n - 1] * (table[m | pair] - table[m | ba] - table[m | bb] + table[m])
                for m in range(1 << n)
                if not m & pair
                for s in (m.bit_count(),)
            )
    return out
