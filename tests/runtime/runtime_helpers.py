"""Helpers shared by the runtime tests."""

from __future__ import annotations

from collections.abc import Sequence

from mdap import Sample
from mdap.types import Message


class Crashing:
    """Wraps a model and dies (like a killed process) after ``calls`` requests."""

    def __init__(self, inner: object, calls: int) -> None:
        self.inner = inner
        self.left = calls

    async def sample(self, messages: Sequence[Message], **kw: object) -> list[Sample]:
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt("killed")
        return await self.inner.sample(messages, **kw)  # type: ignore[attr-defined,no-any-return]
