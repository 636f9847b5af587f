"""Calibration: estimate per-sample correctness from a short run, and pick k for a target (``k="auto"``).

A calibration draws a fixed number of samples at each of a few steps. The right answer of a step is the
reference when one is known (a verifier), else the plurality of its samples. Besides mean ``p`` it keeps the
per-step ``p`` and the *collision rate* -- how often two wrong samples of one step agree -- because voting
needs every step above 1/2 and wrong samples that disagree, not just a good mean.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from mdap.errors import ConfigError
from mdap.models import ChatModel
from mdap.types import Message

from .base import Ballot, Parser
from .redflags import RedFlagPolicy
from .reliability import PEstimate, estimate_p, expected_samples, k_min
from .transforms import Spread

__all__ = ["P_BINS", "Calibration", "sample_ballot"]

A = TypeVar("A")

P_BINS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
"""Default edges of the per-step p histogram: below 1/2 voting fails, near 1 it is cheap."""


async def sample_ballot(
    model: ChatModel,
    messages: Sequence[Message],
    parse: Parser[A],
    n: int,
    *,
    temperature: float,
    red_flags: RedFlagPolicy,
    max_tokens: int | None = None,
    adapter: str | None = None,
    spread: Spread | None = None,
) -> Ballot[A]:
    """Draw exactly ``n`` samples and tally them (no stopping rule): in one request, or spread round-robin over
    ``spread``'s views and adapters (answers mapped back to the original prompt's frame)."""
    ballot: Ballot[A] = Ballot()
    if spread is not None:
        drawn = await spread.draw(
            model, messages, n, 0, temperature=temperature, max_tokens=max_tokens, default_adapter=adapter, parse=parse
        )
        for sample, mapped, view in drawn:
            ballot.cast(sample, mapped, red_flags, view)
        return ballot
    for sample in await model.sample(messages, n=n, temperature=temperature, max_tokens=max_tokens, adapter=adapter):
        ballot.cast(sample, parse, red_flags)
    return ballot


@dataclass
class Calibration:
    """Counts gathered over the calibration steps.

    Attributes:
        per_step: (right votes, valid votes) per step with at least one valid vote.
        red_flagged: red-flagged samples; samples: all samples drawn.
        agreeing_pairs, wrong_pairs: pairs of wrong samples of one step that agree, and all such pairs.
    """

    per_step: list[tuple[int, int]] = field(default_factory=list)
    red_flagged: int = 0
    samples: int = 0
    agreeing_pairs: int = 0
    wrong_pairs: int = 0

    def add(self, ballot: Ballot[A], reference: Hashable | None = None) -> Hashable | None:
        """Record one step's ballot; returns the answer taken as right (``reference`` or the plurality)."""
        self.samples += ballot.samples
        self.red_flagged += sum(ballot.flags.values())
        if not ballot.tally:
            return reference
        right = reference if reference is not None else ballot.leader()[0]
        self.add_counts(ballot.tally.get(right, 0), [c for a, c in ballot.tally.items() if a != right])
        return right

    def add_counts(self, right: int, wrong: Sequence[int], samples: int = 0, red_flagged: int = 0) -> None:
        """Record one step from counts: right votes, the vote count of each distinct wrong answer, and (when
        not already counted through :meth:`add`) the samples drawn and red-flagged.

        Raises:
            ConfigError: a negative count.
        """
        if right < 0 or any(c < 0 for c in wrong) or samples < 0 or red_flagged < 0:
            raise ConfigError(f"vote counts must be >= 0, got right={right}, wrong={list(wrong)}")
        self.samples += samples
        self.red_flagged += red_flagged
        w = sum(wrong)
        if right + w == 0:
            return
        self.per_step.append((right, right + w))
        self.wrong_pairs += w * (w - 1) // 2
        self.agreeing_pairs += sum(c * (c - 1) // 2 for c in wrong)

    @property
    def estimate(self) -> PEstimate:
        """Pooled estimate of p over all valid calibration votes."""
        if not self.per_step:
            raise ConfigError("calibration saw no valid sample: every sample was red-flagged; check the model")
        return estimate_p(sum(c for c, _ in self.per_step), sum(t for _, t in self.per_step))

    @property
    def step_ps(self) -> list[float]:
        """Observed p of each calibration step."""
        return [c / t for c, t in self.per_step]

    @property
    def fraction_below_half(self) -> float:
        """Fraction of calibration steps whose observed p is not above 1/2 (voting cannot fix those)."""
        ps = self.step_ps
        return sum(p <= 0.5 for p in ps) / len(ps) if ps else 0.0

    @property
    def collision_rate(self) -> float | None:
        """Probability that two wrong samples of a step agree; None if no step had two wrong samples."""
        return self.agreeing_pairs / self.wrong_pairs if self.wrong_pairs else None

    def p_quantiles(self, qs: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)) -> dict[str, float]:
        """Quantiles of the per-step p (nearest rank), keyed ``"min"``, ``"q10"``, ..., ``"max"``."""
        ps = sorted(self.step_ps)
        if not ps:
            return {}
        out: dict[str, float] = {}
        for q in qs:
            key = "min" if q == 0.0 else "max" if q == 1.0 else f"q{round(q * 100):02d}"
            out[key] = ps[min(len(ps) - 1, max(0, math.ceil(q * len(ps)) - 1))]
        return out

    def p_histogram(self, edges: Sequence[float] = P_BINS) -> dict[str, int]:
        """How many steps fall in each p bin ``[lo, hi)`` (the last bin includes 1), keyed ``"lo-hi"``."""
        out = {f"{lo:g}-{hi:g}": 0 for lo, hi in itertools.pairwise(edges)}
        keys = list(out)
        for p in self.step_ps:
            i = next((i for i, hi in enumerate(edges[1:]) if p < hi), len(keys) - 1)
            out[keys[i]] += 1
        return out

    def warnings(self, max_collision: float = 0.3) -> list[str]:
        """Why voting may not work here: steps with p <= 1/2, a high collision rate of wrong samples."""
        out = []
        below = self.fraction_below_half
        if below > 0:
            n = round(below * len(self.per_step))
            out.append(
                f"{n} of {len(self.per_step)} steps have p <= 1/2: voting makes those steps worse, whatever k; "
                "improve the model on them (train an adapter, decorrelate samples) or decompose further"
            )
        collision = self.collision_rate
        if collision is not None and collision > max_collision:
            out.append(
                f"wrong samples of a step agree {collision:.0%} of the time (collision rate): errors are correlated, "
                "so the reliability math is optimistic; spread samples over answer-preserving transforms"
            )
        return out

    @property
    def red_flag_rate(self) -> float:
        """Fraction of samples that were red-flagged."""
        return self.red_flagged / self.samples if self.samples else 0.0

    def k_for(self, steps: int, target: float = 0.95) -> int:
        """The k_min for ``steps`` steps at ``target`` success, from the pooled estimate of p."""
        return k_min(self.estimate.p, steps, target)

    def summary(self, steps: int, target: float = 0.95) -> dict[str, object]:
        """A JSON-able summary: p, its interval, per-step spread, collision and red-flag rates, k, cost."""
        est = self.estimate
        out: dict[str, object] = {
            "p": est.p,
            "p_low": est.low,
            "p_high": est.high,
            "steps_calibrated": len(self.per_step),
            "samples": self.samples,
            "fraction_steps_p_below_half": self.fraction_below_half,
            "collision_rate": self.collision_rate,
            "red_flag_rate": self.red_flag_rate,
            "p_quantiles": self.p_quantiles(),
            "p_histogram": self.p_histogram(),
            "warnings": self.warnings(),
        }
        if est.p > 0.5:
            k = self.k_for(steps, target)
            out["k"] = k
            out["expected_samples_per_step"] = expected_samples(est.p, k, min(self.red_flag_rate, 0.99))
        return out
