"""First-to-ahead-by-k voting (MAKER): sample until one answer leads every other by k votes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from mdap.errors import ConfigError
from mdap.models import ChatModel, Sample
from mdap.types import Message

from .base import Ballot, Decision, Parser
from .redflags import RedFlagPolicy
from .transforms import Spread

__all__ = ["MAKER", "FirstToAheadByK"]

A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class FirstToAheadByK:
    """Decide a step by the first answer that leads every other answer by ``k`` votes.

    The first round draws ``k`` samples concurrently (one request with ``n=k``, or two concurrent ones when the
    first sample uses its own temperature: a request carries one temperature, so MAKER's greedy first sample
    goes as a request of its own beside the ``n=k-1`` one). While no answer leads by ``k``, each further round
    draws exactly the number of samples that could end the vote (``k`` minus the current lead), so no sample is
    wasted. Red-flagged samples are discarded and simply not counted, so they are redrawn by the next round.

    Args:
        k: the winning margin, or ``"auto"`` to pick the smallest k that reaches ``target`` for the run's
            number of steps from a short calibration run (see :func:`mdap.voters.calibrate`).
        temperature: sampling temperature of the samples.
        first_temperature: temperature of each step's first sample (MAKER: 0.0, then 0.1 for the rest);
            None means the same as ``temperature``.
        max_samples: hard cap on samples per step (red-flagged included); reaching it raises VoteFailed.
        max_tokens: completion token limit sent to the model; None = the red-flag limit
            (``red_flags.max_completion_tokens``), so the server stops where a longer sample would be discarded
            anyway: one setting, unless set apart.
        red_flags: which samples to discard before parsing.
        adapter: the LoRA adapter (served model name) to sample from; None for the base model.
        target: the whole-task success probability ``k="auto"`` aims for.
        spread: decorrelated sampling -- draw the samples round-robin over answer-preserving views of the
            prompt and over adapters (see :mod:`mdap.voters.transforms`); ``first_temperature`` is then unused.

    Raises:
        ConfigError: k < 1 (or not "auto"), max_samples < k, a negative temperature, target outside (0, 1).
    """

    k: int | Literal["auto"] = 3
    temperature: float = 0.1
    first_temperature: float | None = None
    max_samples: int = 100
    max_tokens: int | None = None
    red_flags: RedFlagPolicy = field(default_factory=RedFlagPolicy)
    adapter: str | None = None
    target: float = 0.95
    spread: Spread | None = None

    def __post_init__(self) -> None:
        if self.k != "auto" and (not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1):
            raise ConfigError(f"k must be an integer >= 1 or 'auto', got {self.k!r}")
        if isinstance(self.k, int) and self.max_samples < self.k:
            raise ConfigError(f"max_samples ({self.max_samples}) must be at least k ({self.k})")
        if self.temperature < 0 or (self.first_temperature is not None and self.first_temperature < 0):
            raise ConfigError("temperatures must be >= 0")
        if not 0.0 < self.target < 1.0:
            raise ConfigError(f"target must be in (0, 1), got {self.target}")

    @classmethod
    def maker(cls, k: int | Literal["auto"] = 3, *, max_tokens: int = 750, **options: Any) -> FirstToAheadByK:
        """MAKER's settings: each step's first sample greedy (temperature 0), the rest at 0.1, and samples over
        ``max_tokens`` (750) red-flagged -- the server is asked for no more than that.

        ``options`` override any other field (``max_samples=``, ``adapter=``, ``spread=``...).
        """
        settings: dict[str, Any] = {
            "temperature": 0.1,
            "first_temperature": 0.0,
            "red_flags": RedFlagPolicy(max_completion_tokens=max_tokens),
        }
        settings.update(options)
        return cls(k=k, max_tokens=max_tokens, **settings)

    @property
    def request_max_tokens(self) -> int | None:
        """The ``max_tokens`` each request carries: ``max_tokens``, else the red-flag length limit."""
        return self.max_tokens if self.max_tokens is not None else self.red_flags.max_completion_tokens

    def with_k(self, k: int) -> FirstToAheadByK:
        """A copy of this voter with a concrete margin (used to resolve ``k="auto"``)."""
        return replace(self, k=k)

    async def _draw(self, model: ChatModel, messages: Sequence[Message], n: int, first: bool) -> list[Sample]:
        limit = self.request_max_tokens

        def ask(count: int, temperature: float) -> Awaitable[list[Sample]]:
            return model.sample(messages, n=count, temperature=temperature, max_tokens=limit, adapter=self.adapter)

        t0 = self.first_temperature
        if not first or t0 is None or t0 == self.temperature:
            return await ask(n, self.temperature)
        if n == 1:
            return await ask(1, t0)
        head, rest = await asyncio.gather(ask(1, t0), ask(n - 1, self.temperature))
        return head + rest

    async def decide(self, model: ChatModel, messages: Sequence[Message], parse: Parser[A]) -> Decision[A]:
        """Vote on one step.

        Raises:
            ConfigError: k is still "auto" (resolve it with :meth:`with_k` or a calibration first).
            VoteFailed: ``max_samples`` were drawn and no answer led by k (carries the tally).
        """
        k = self.k
        if not isinstance(k, int):
            raise ConfigError("k='auto' must be resolved by a calibration before voting (see Calibration.k_for)")
        ballot: Ballot[A] = Ballot(k)
        policy = self.red_flags
        need = k
        first = True
        while True:
            room = self.max_samples - ballot.samples
            if room <= 0:
                raise ballot.failure(
                    f"no answer led by {k} after {ballot.samples} samples (cap {self.max_samples}); "
                    "raise max_samples or k, or use a stronger model"
                )
            if self.spread is not None:
                drawn = await self.spread.draw(
                    model, messages, min(need, room), ballot.samples, temperature=self.temperature,
                    max_tokens=self.request_max_tokens, default_adapter=self.adapter, parse=parse,
                )  # fmt: skip
                for sample, mapped, view in drawn:
                    ballot.cast(sample, mapped, policy, view)
            else:
                for sample in await self._draw(model, messages, min(need, room), first):
                    ballot.cast(sample, parse, policy)
            first = False
            best, lead = ballot.leader()
            if best is not None and lead >= k:
                return ballot.decision(best)  # type: ignore[arg-type]
            need = k - lead


MAKER = FirstToAheadByK.maker()
"""MAKER's voter (Meyerson et al., 2025): k=3, the first sample of each step greedy and the rest at temperature
0.1, samples over 750 tokens red-flagged. ``FirstToAheadByK.maker(k=...)`` for another margin."""
