"""Plain majority voting (self-consistency): the baseline first-to-ahead-by-k is measured against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from mdap.errors import ConfigError
from mdap.models import ChatModel
from mdap.types import Message

from .base import Ballot, Decision, Parser
from .redflags import RedFlagPolicy

__all__ = ["Majority"]

A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class Majority:
    """Draw ``n`` valid samples and take the most common answer (ties go to the answer seen first).

    Red-flagged samples don't count toward ``n`` and are redrawn, up to ``max_samples`` in all.

    Args:
        n: number of valid votes to collect.
        temperature: sampling temperature.
        max_samples: hard cap on samples per step, red-flagged included; reaching it raises VoteFailed.
        max_tokens: completion token limit passed to the model.
        red_flags: which samples to discard before parsing.
        adapter: the LoRA adapter (served model name) to sample from.
    """

    n: int = 5
    temperature: float = 0.7
    max_samples: int = 100
    max_tokens: int | None = None
    red_flags: RedFlagPolicy = field(default_factory=RedFlagPolicy)
    adapter: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"n must be an integer >= 1, got {self.n!r}")
        if self.max_samples < self.n:
            raise ConfigError(f"max_samples ({self.max_samples}) must be at least n ({self.n})")

    async def decide(self, model: ChatModel, messages: Sequence[Message], parse: Parser[A]) -> Decision[A]:
        """Vote on one step; raises VoteFailed if ``max_samples`` pass before ``n`` valid votes."""
        ballot: Ballot[A] = Ballot()
        valid = 0
        while valid < self.n:
            room = self.max_samples - ballot.samples
            if room <= 0:
                raise ballot.failure(
                    f"only {valid} of {self.n} samples passed the red flags within the cap of {self.max_samples}"
                )
            batch = await model.sample(
                messages,
                n=min(self.n - valid, room),
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                adapter=self.adapter,
            )
            for sample in batch:
                if ballot.cast(sample, parse, self.red_flags) is not None:
                    valid += 1
        best, _ = ballot.leader()
        return ballot.decision(best)  # type: ignore[arg-type]
