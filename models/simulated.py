"""A deterministic, seeded simulated model: a documented backend for tests, dry runs and scale runs.

It answers like a model with a known per-sample error rate: an *oracle* gives the right completion for a
prompt; with probability ``error_rate`` a sample is wrong instead, with probability ``red_flag_rate`` it is
malformed or over-long. Wrong samples can be *correlated* (agree on one wrong answer per prompt), which is
the case voting handles worst. With ``latency_s`` every call waits as a batched server would.
"""

from __future__ import annotations

import asyncio
import random
import re
import zlib
from collections.abc import Callable, Sequence

from mdap.errors import ConfigError
from mdap.types import Message

from .base import Sample

__all__ = ["Oracle", "SimulatedModel", "WrongAnswer", "perturb_digit"]

Oracle = Callable[[Sequence[Message]], str]
"""Returns the right completion text for a prompt."""

WrongAnswer = Callable[[Sequence[Message], str, random.Random], str]
"""Returns a wrong completion, given the prompt, the right completion and a random source."""

_DIGIT = re.compile(r"\d")
_MALFORMED = "I am not sure. Let me think about this step by step before answering"


def perturb_digit(messages: Sequence[Message], correct: str, rng: random.Random) -> str:
    """The default wrong answer: the right text with one digit changed (or a word appended if it has none)."""
    spots = [m.start() for m in _DIGIT.finditer(correct)]
    if not spots:
        return correct + " not"
    i = rng.choice(spots)
    digit = int(correct[i])
    new = (digit + rng.randint(1, 9)) % 10
    return correct[:i] + str(new) + correct[i + 1 :]


def _check_rate(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be between 0 and 1, got {value!r}")
    return value


class SimulatedModel:
    """A seeded :class:`~mdap.models.ChatModel` with a set per-sample error rate.

    Args:
        oracle: gives the right completion for a prompt.
        error_rate: probability that a sample is a wrong (but well-formed) answer.
        red_flag_rate: probability that a sample is red-flag material: half are over-long (``finish_reason``
            ``"length"``), half malformed text.
        correlation: probability that a wrong sample is the prompt's one shared wrong answer rather than an
            independent one (0 = wrong samples rarely agree, 1 = they always agree).
        wrong: makes a wrong answer; defaults to :func:`perturb_digit`.
        latency_s: seconds each call waits (one wait per call, as a server batching ``n`` samples).
        seed: seeds every random choice; a run is reproducible from its seed.

    At temperature 0 a sample depends only on the prompt and the seed, as greedy decoding does.

    Raises:
        ConfigError: a rate outside [0, 1], a negative latency, or error_rate + red_flag_rate > 1.
    """

    def __init__(
        self,
        oracle: Oracle,
        *,
        error_rate: float = 0.0,
        red_flag_rate: float = 0.0,
        correlation: float = 0.0,
        wrong: WrongAnswer | None = None,
        latency_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.error_rate = _check_rate("error_rate", error_rate)
        self.red_flag_rate = _check_rate("red_flag_rate", red_flag_rate)
        self.correlation = _check_rate("correlation", correlation)
        if error_rate + red_flag_rate > 1.0:
            raise ConfigError("error_rate + red_flag_rate must be at most 1")
        if latency_s < 0:
            raise ConfigError(f"latency_s must be >= 0, got {latency_s!r}")
        self.oracle = oracle
        self.wrong = wrong or perturb_digit
        self.latency_s = latency_s
        self.seed = seed
        self._rng = random.Random(seed)
        self.calls = 0
        self.samples_drawn = 0

    def _prompt_rng(self, messages: Sequence[Message], salt: int) -> random.Random:
        key = zlib.crc32(messages[-1]["content"].encode()) if messages else 0
        return random.Random((self.seed * 1_000_003 + key) * 7 + salt)

    def _draw(
        self, messages: Sequence[Message], correct: str, rng: random.Random, max_tokens: int | None
    ) -> tuple[str, str, int]:
        u = rng.random()
        if u < self.error_rate:
            if self.correlation and rng.random() < self.correlation:
                text = self.wrong(messages, correct, self._prompt_rng(messages, 1))
            else:
                text = self.wrong(messages, correct, rng)
            return text, "stop", len(text) // 4 + 1
        if u < self.error_rate + self.red_flag_rate:
            if rng.random() < 0.5:
                limit = max_tokens or 4 * len(correct)
                return correct[: len(correct) // 2], "length", limit
            return _MALFORMED, "stop", len(_MALFORMED) // 4 + 1
        return correct, "stop", len(correct) // 4 + 1

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        """Draw ``n`` simulated completions of ``messages`` (see the class docstring)."""
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        self.calls += 1
        self.samples_drawn += n
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        correct = self.oracle(messages)
        if temperature == 0.0:  # greedy decoding: every sample of a prompt is the same
            text, finish, tokens = self._draw(messages, correct, self._prompt_rng(messages, 0), max_tokens)
            return [Sample(text, tokens, 0, finish, self.latency_s, adapter, 0.0) for _ in range(n)]
        out = []
        for _ in range(n):
            text, finish, tokens = self._draw(messages, correct, self._rng, max_tokens)
            out.append(Sample(text, tokens, 0, finish, self.latency_s, adapter, temperature))
        return out
