"""A scripted model: replies with given texts in order. For tests and examples of exact vote sequences."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mdap.errors import ModelError
from mdap.types import Message

from .base import Sample

__all__ = ["ModelCall", "ScriptedModel"]


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One recorded request: how many samples at which temperature, and the prompt's last message."""

    n: int
    temperature: float
    adapter: str | None
    prompt: str


class ScriptedModel:
    """A :class:`~mdap.models.ChatModel` that hands out ``responses`` in order, one per sample.

    Each response is a text, or a ``(text, finish_reason, completion_tokens)`` tuple to script red flags.
    Every call is recorded in :attr:`calls`; :attr:`max_in_flight` is the most calls that overlapped, which
    shows whether samples were requested concurrently.

    Args:
        responses: the samples to return, in order.
        latency_s: seconds each call waits before answering.

    Raises:
        ModelError: from :meth:`sample` when the script has run out.
    """

    def __init__(self, responses: Iterable[str | tuple[str, str, int]], *, latency_s: float = 0.0) -> None:
        self._responses = list(responses)
        self._next = 0
        self.latency_s = latency_s
        self.calls: list[ModelCall] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def remaining(self) -> int:
        """Responses not handed out yet."""
        return len(self._responses) - self._next

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        """Return the next ``n`` scripted samples."""
        self.calls.append(ModelCall(n, temperature, adapter, messages[-1]["content"] if messages else ""))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if self.remaining < n:
                raise ModelError(f"scripted model ran out of responses ({self.remaining} left, {n} asked)")
            batch = self._responses[self._next : self._next + n]
            self._next += n
        finally:
            self.in_flight -= 1
        out = []
        for item in batch:
            text, finish, tokens = (item, "stop", len(item) // 4 + 1) if isinstance(item, str) else item
            out.append(Sample(text, tokens, 0, finish, self.latency_s, adapter, temperature))
        return out
