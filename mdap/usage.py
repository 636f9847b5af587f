"""Usage: what model work cost — samples, red flags, tokens, cost, model time — as one value with ``+``.

Every place that counts model work holds one: a voter's :class:`~mdap.voters.Decision`, a worker's output, a
subtask's result, a run report and its per-module stats, a GAIA result. Adding two is the only way they merge::

    total = Usage.zero()
    for d in decisions:
        total += d.usage

A leaf: it imports nothing of ours (the lowest layer; :mod:`mdap.errors` builds on it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Usage", "format_cost"]

_EMPTY: dict[str, int] = {}


@dataclass(slots=True)
class Usage:
    """Model work, summed with ``+``.

    A value: never change one in place (instances are shared, :meth:`zero` among them). It is not ``frozen``
    only because a frozen dataclass is built at half the speed, and the executor adds one per step.

    Attributes:
        samples: samples drawn, red-flagged ones included.
        red_flags: red-flagged samples by kind (``parse``, ``too_long``, ...).
        completion_tokens: tokens generated.
        prompt_tokens: prompt tokens, when the backend reports them.
        cost: cost in the prices' unit (e.g. USD), from the tokens and the model's price; None when no sample
            had a price set (a report then says "no price set" rather than 0).
        model_seconds: summed latency of the model requests.
    """

    samples: int = 0
    red_flags: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cost: float | None = None
    model_seconds: float = 0.0

    @staticmethod
    def zero() -> Usage:
        """No work (the identity of ``+``)."""
        return _ZERO

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        mine, theirs = self.red_flags, other.red_flags
        if not theirs:
            flags = mine
        elif not mine:
            flags = theirs
        else:
            merged = dict(mine)
            for kind, c in theirs.items():
                merged[kind] = merged.get(kind, 0) + c
            flags = merged
        return Usage(
            self.samples + other.samples,
            flags,
            self.completion_tokens + other.completion_tokens,
            self.prompt_tokens + other.prompt_tokens,
            _add_cost(self.cost, other.cost),
            self.model_seconds + other.model_seconds,
        )

    def __sub__(self, other: Usage) -> Usage:
        """The work done since ``other`` was taken of the same running total (red flags of no new count left out)."""
        if not isinstance(other, Usage):
            return NotImplemented
        before = other.red_flags
        flags = {k: c - before.get(k, 0) for k, c in self.red_flags.items() if c > before.get(k, 0)}
        return Usage(
            self.samples - other.samples,
            flags,
            self.completion_tokens - other.completion_tokens,
            self.prompt_tokens - other.prompt_tokens,
            None if self.cost is None else self.cost - (other.cost or 0.0),
            self.model_seconds - other.model_seconds,
        )

    def __bool__(self) -> bool:
        """Whether any work is counted."""
        return self != _ZERO

    @property
    def red_flag_count(self) -> int:
        """Red-flagged samples of every kind."""
        return sum(self.red_flags.values())

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict with one key per field (the keys reports and the pool's wire use)."""
        return {
            "samples": self.samples,
            "red_flags": dict(self.red_flags),
            "completion_tokens": self.completion_tokens,
            "prompt_tokens": self.prompt_tokens,
            "cost": self.cost,
            "model_seconds": self.model_seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Usage:
        """The inverse of :meth:`to_json`; missing keys are 0 and other keys are ignored, so a report's or a
        record's flat dict reads as it is."""
        flags = data.get("red_flags")
        return cls(
            int(data.get("samples", 0)),
            {str(k): int(v) for k, v in flags.items()} if flags else _EMPTY,
            int(data.get("completion_tokens", 0)),
            int(data.get("prompt_tokens", 0)),
            None if data.get("cost") is None else float(data["cost"]),
            float(data.get("model_seconds", 0.0)),
        )


def _add_cost(a: float | None, b: float | None) -> float | None:
    """Costs add up; None (no price set) is no cost, and stays None only if both are."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def format_cost(cost: float | None) -> str:
    """A cost as reports print it: ``0.0123`` or ``n/a (no price set)``."""
    return "n/a (no price set)" if cost is None else f"{cost:.6g}"


FIELDS = frozenset(Usage.__dataclass_fields__)
"""The names of Usage's fields (the keys of :meth:`Usage.to_json`)."""

_ZERO = Usage()
