"""The ChatModel protocol every backend implements, and the Sample it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mdap.types import Message

__all__ = ["ChatModel", "Sample"]


@dataclass(slots=True)
class Sample:
    """One model completion.

    A plain slotted dataclass, not a pydantic model: millions are made in a long run.

    Attributes:
        text: the completion text.
        completion_tokens: tokens generated (used by the too-long red flag).
        prompt_tokens: tokens in the prompt, when the backend reports them.
        finish_reason: ``"stop"``, ``"length"`` (hit max_tokens: red-flagged) or backend specific.
        latency_s: seconds from request to response (shared by samples of one batched request).
        adapter: the LoRA adapter (model name) that produced it, or None for the base model.
        temperature: the sampling temperature used.
        cost: cost from the tokens and the model's :class:`~mdap.models.Price`; None when no price is set.
    """

    text: str
    completion_tokens: int
    prompt_tokens: int = 0
    finish_reason: str = "stop"
    latency_s: float = 0.0
    adapter: str | None = None
    temperature: float = 0.0
    cost: float | None = None


@runtime_checkable
class ChatModel(Protocol):
    """Anything that can draw ``n`` independent completions for a chat prompt.

    Backends batch the ``n`` samples as well as they can (the server's ``n`` parameter, concurrent requests),
    and raise :class:`mdap.errors.ModelError` on transport failures.
    """

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        """Draw ``n`` completions of ``messages``."""
        ...
