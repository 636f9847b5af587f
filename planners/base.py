"""The Planner protocol every decomposition strategy implements, and the optional Expander for recursion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from .plan import Plan, ReplanContext, Subtask, Task

__all__ = ["Expander", "Planner", "count_red_flag", "count_red_flags"]


def count_red_flag(model: object, kind: str, count: int = 1) -> None:
    """Count a red flag of a planner (a discarded plan, a truncated reply, a fallback) where ``model`` counts
    them: see :func:`count_red_flags`."""
    if count:
        count_red_flags(model, {kind: count})


def count_red_flags(model: object, flags: Mapping[str, int]) -> None:
    """Count a planner's red flags (kind -> count) where ``model`` counts them: a model with a
    ``count_red_flags`` method (the pipeline's planner meter, which puts them in the run's report). Other models
    do not count them."""
    count = getattr(model, "count_red_flags", None)
    if count is not None and flags:
        count(flags)


@runtime_checkable
class Planner(Protocol):
    """Turns a task into a validated plan.

    ``roles`` maps each worker role name to its description (what the planner may assign). With ``context``
    the call is a replan: the previous plan failed and the planner should route around the failures.
    """

    async def plan(self, task: Task, roles: Mapping[str, str], context: ReplanContext | None = None) -> Plan:
        """Return a validated plan for ``task``; raise PlanError if none can be made."""
        ...


@runtime_checkable
class Expander(Protocol):
    """A planner that can plan one subtask a worker found too big (see :class:`RecursivePlanner`)."""

    max_depth: int

    async def expand(self, task: Task, subtask: Subtask, roles: Mapping[str, str], depth: int) -> Plan:
        """Plan ``subtask`` (found too big at nesting ``depth``, 0 for a top-level subtask) as its own task."""
        ...
