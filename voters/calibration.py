"""Calibration: estimate per-sample correctness from a short run, and pick k for a target (``k="auto"``).

A calibration draws a fixed number of samples at each of a few steps. The right answer of a step is the
reference when one is known (a verifier), else the plurality of its samples. Besides mean ``p`` it keeps the
per-step ``p`` and the *collision rate* -- how often two wrong samples of one step agree -- because voting
needs every step above 1/2 and wrong samples that disagree, not just a good mean.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from mdap.errors import ConfigError
from mdap.models import ChatModel
from mdap.types import Message

from .base import Ballot, Parser
from .redflags import RedFlagPolicy
from .reliability import PEstimate, estimate_p, expected_samples, k_min

__all__ = ["Calibration", "sample_ballot"]

A = TypeVar("A")


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
) -> Ballot[A]:
    """Draw exactly ``n`` samples in one request and tally them (no stopping rule)."""
    ballot: Ballot[A] = Ballot()
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
        valid = sum(ballot.tally.values())
        self.per_step.append((ballot.tally.get(right, 0), valid))
        wrong = [c for a, c in ballot.tally.items() if a != right]
        w = sum(wrong)
        self.wrong_pairs += w * (w - 1) // 2
        self.agreeing_pairs += sum(c * (c - 1) // 2 for c in wrong)
        return right

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
        }
        if est.p > 0.5:
            k = self.k_for(steps, target)
            out["k"] = k
            out["expected_samples_per_step"] = expected_samples(est.p, k, min(self.red_flag_rate, 0.99))
        return out
