"""LocalPool: steps are decided in this process, on the event loop (the default pool)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from mdap.errors import ConfigError
from mdap.microstep import Chain
from mdap.models import ChatModel
from mdap.types import Message
from mdap.voters import Decision, Voter

from .base import PoolSession, StepRunner

__all__ = ["LocalPool"]


class LocalPool:
    """Decide steps in-process with the executor's model.

    Args:
        concurrency: at most this many steps (over every run sharing the pool) vote at once; None = no bound
            (the executor's fast path: the runner is the voter itself, with no per-step overhead).
    """

    def __init__(self, concurrency: int | None = None) -> None:
        if concurrency is not None and concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1 or None, got {concurrency}")
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency) if concurrency else None

    @asynccontextmanager
    async def session(
        self, chain: Chain[Any, Any], voter: Voter, model: ChatModel | None, run_id: str
    ) -> AsyncIterator[PoolSession]:
        """A session that votes with ``voter`` on ``model`` (the chain's parser decides what a vote is)."""
        if model is None:
            raise ConfigError("the local pool samples from the executor's model: give the executor a model")
        yield _LocalSession(voter, model, chain.microstep.parse, self._slots)


class _LocalSession:
    """Votes in-process. Unbounded, ``decide`` is the voter's own coroutine (no per-step overhead)."""

    __slots__ = ("decide",)

    def __init__(
        self, voter: Voter, model: ChatModel, parse: Callable[[str], Any], slots: asyncio.Semaphore | None
    ) -> None:
        vote = voter.decide
        self.decide: StepRunner
        if slots is None:
            self.decide = lambda step, messages: vote(model, messages, parse)
            return

        async def bounded(step: int, messages: list[Message]) -> Decision[Any]:
            async with slots:
                return await vote(model, messages, parse)

        self.decide = bounded

    def checkpointed(self, next_step: int) -> None:
        """Nothing to drop: results live only in the executor."""
