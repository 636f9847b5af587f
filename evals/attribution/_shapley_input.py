"""Validation shared by the Shapley functions: the player list and the numbers a value function returns."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from mdap.errors import ConfigError

__all__ = ["ValueFn", "check_players", "evaluate"]

ValueFn = Callable[[frozenset[str]], float]
"""A game: the value of a coalition (the frozenset of player names using their test variant)."""


def check_players(players: Sequence[str]) -> list[str]:
    """Return ``players`` as a list after checking they are distinct, non-empty strings.

    Raises:
        ConfigError: no players, a name that is not a non-empty string, or a name given twice.
    """
    if isinstance(players, str):
        raise ConfigError(f"players must be a list of names, not the string {players!r}")
    names = list(players)
    if not names:
        raise ConfigError("a game needs at least one player")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"player names must be non-empty strings, got {name!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"player names must be distinct; given more than once: {', '.join(dupes)}")
    return names


def evaluate(value: ValueFn, coalition: frozenset[str]) -> float:
    """``value(coalition)`` as a float.

    Raises:
        ConfigError: the value is not a finite real number (exceptions raised by ``value`` pass through).
    """
    raw = value(coalition)
    try:
        out = float(raw)
    except (TypeError, ValueError):
        out = math.nan
    if not math.isfinite(out):
        raise ConfigError(
            f"the value of coalition {sorted(coalition)} is {raw!r}, not a finite number; "
            "a value function must return a float"
        )
    return out
