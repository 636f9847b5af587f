"""A scripted model: replies with given texts in order. For tests and examples of exact vote sequences."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mdap.errors import ModelError
from mdap.types import Message

from .base import Sample

__all__ = ["ModelCall", "ScriptedModel"]


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One recorded request: how many samples at which temperature, the prompt's last message, the optional
    request fields it carried (``tools``, ``tool_choice``, ``response_format``; see :mod:`mdap.models.options`),
    and every message sent."""

    n: int
    temperature: float
    adapter: str | None
    prompt: str
    options: Mapping[str, Any] = field(default_factory=dict)
    messages: tuple[Message, ...] = ()


class ScriptedModel:
    """A :class:`~mdap.models.ChatModel` that hands out ``responses`` in order, one per sample.

    Each response is a text, or a ``(text, finish_reason, completion_tokens)`` tuple to script red flags.
    Every call is recorded in :attr:`calls`; :attr:`max_in_flight` is the most calls that overlapped, which
    shows whether samples were requested concurrently.

    Args:
        responses: the samples to return, in order.
        latency_s: seconds each call waits before answering.
        native_tools: it takes ``tools`` and ``tool_choice`` (recorded, not used: the script decides).
        structured_outputs: it takes ``response_format`` (recorded, not used).

    Raises:
        ModelError: from :meth:`sample` when the script has run out.
    """

    def __init__(
        self,
        responses: Iterable[str | tuple[str, str, int]],
        *,
        latency_s: float = 0.0,
        native_tools: bool = False,
        structured_outputs: bool = False,
    ) -> None:
        self.native_tools = native_tools
        self.structured_outputs = structured_outputs
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
        **options: Any,
    ) -> list[Sample]:
        """Return the next ``n`` scripted samples (``options``: the optional request fields, recorded).

        Raises:
            ModelError: the script has run out, or ``options`` holds fields the model was not made to take.
        """
        taken = {"tools", "tool_choice"} if self.native_tools else set()
        taken |= {"response_format"} if self.structured_outputs else set()
        if set(options) - taken:
            raise ModelError(f"scripted model: request fields it does not take: {sorted(set(options) - taken)}")
        prompt = messages[-1]["content"] if messages else ""
        self.calls.append(ModelCall(n, temperature, adapter, prompt, dict(options), tuple(messages)))
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
