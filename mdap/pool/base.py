"""The Pool protocol: where the executor's steps are decided.

The executor asks a pool for a *step runner* for one chain run: ``await decide(step, messages)`` returns the
:class:`~mdap.voters.Decision` of step ``step`` (an index in the chain) for the rendered prompt ``messages``.
:class:`~mdap.pool.LocalPool` votes in-process; :class:`~mdap.pool.RedisPool` publishes the step to workers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from mdap.microstep import Chain
from mdap.models import ChatModel
from mdap.types import Message
from mdap.voters import Decision, Voter

__all__ = ["Pool", "StepRunner"]

StepRunner = Callable[[int, list[Message]], Awaitable[Decision[Any]]]
"""``(step index, rendered prompt) -> Decision``; raises VoteFailed when the step cannot be decided."""


class Pool(Protocol):
    """Runs the steps of chain runs."""

    def session(
        self, chain: Chain[Any, Any], voter: Voter, model: ChatModel | None, run_id: str
    ) -> AbstractAsyncContextManager[StepRunner]:
        """A step runner for one run of ``chain`` (``run_id`` is stable across resumes of the run).

        Raises:
            ConfigError: the pool cannot run this chain or voter (e.g. a remote pool and no step kind).
        """
        ...
