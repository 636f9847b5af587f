"""The Pool protocol: where the executor's steps are decided.

The executor opens a :class:`PoolSession` for one chain run and, for each step, awaits
``session.decide(step, messages)``: the :class:`~mdap.voters.Decision` of step ``step`` (an index in the
chain) for the rendered prompt ``messages``. After each checkpoint it calls ``session.checkpointed(next_step)``,
so the pool may drop what a resume no longer needs. :class:`~mdap.pool.LocalPool` votes in-process;
:class:`~mdap.pool.RedisPool` publishes the step to workers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from mdap.microstep import Chain
from mdap.models import ChatModel
from mdap.types import Message
from mdap.voters import Decision, Voter

__all__ = ["Pool", "PoolSession", "StepRunner"]

StepRunner = Callable[[int, list[Message]], Awaitable[Decision[Any]]]
"""``(step index, rendered prompt) -> Decision``; raises VoteFailed when the step cannot be decided."""


class PoolSession(Protocol):
    """One chain run's view of a pool: decides its steps and hears of its checkpoints."""

    def decide(self, step: int, messages: list[Message]) -> Awaitable[Decision[Any]]:
        """The decision of step ``step`` (an index in the chain) for its rendered prompt.

        Raises:
            VoteFailed: the step could not be decided.
        """
        ...

    def checkpointed(self, next_step: int) -> None:
        """The run is checkpointed at ``next_step``: what only the steps before it need may go."""
        ...


class Pool(Protocol):
    """Runs the steps of chain runs."""

    def session(
        self, chain: Chain[Any, Any], voter: Voter, model: ChatModel | None, run_id: str
    ) -> AbstractAsyncContextManager[PoolSession]:
        """A session for one run of ``chain`` (``run_id`` is stable across resumes of the run).

        Raises:
            ConfigError: the pool cannot run this chain or voter (e.g. a remote pool and no step kind).
        """
        ...
