"""RecursivePlanner: plans a subtask again when its worker marks it as too big, down to a depth limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mdap.errors import ConfigError, PlanError

from .base import Planner
from .plan import Plan, ReplanContext, Subtask, Task

__all__ = ["RecursivePlanner"]


@dataclass
class RecursivePlanner:
    """Wraps a planner so that too-big subtasks are decomposed again.

    The coordinator offers workers of a pipeline with this planner a way to answer "too big"; such a subtask
    is handed to :meth:`expand`, which plans its instruction as a task of its own (with the parent task as
    context). Its sub-plan runs in place of the subtask; the results of the sub-plan's sinks become the
    subtask's result. Workers at ``max_depth`` are not offered "too big".

    Args:
        inner: plans the task and every expanded subtask.
        max_depth: how many times a subtask may be split again (>= 1).
    """

    inner: Planner
    max_depth: int = 2

    def __post_init__(self) -> None:
        if self.max_depth < 1:
            raise ConfigError(f"max_depth must be >= 1, got {self.max_depth}")

    async def plan(self, task: Task, roles: Mapping[str, str], context: ReplanContext | None = None) -> Plan:
        """The inner planner's plan."""
        return await self.inner.plan(task, roles, context)

    async def expand(self, task: Task, subtask: Subtask, roles: Mapping[str, str], depth: int) -> Plan:
        """Plan ``subtask`` as a task of its own.

        Raises:
            PlanError: ``depth`` is at the limit, or the inner planner fails.
        """
        if depth >= self.max_depth:
            raise PlanError(
                f"subtask {subtask.id} is too big at depth {depth}, the limit is {self.max_depth}; "
                "raise max_depth or plan smaller subtasks"
            )
        sub = Task(
            text=subtask.instruction,
            inputs={"part_of_task": task.text[:2000], "depth": depth + 1},
            files=task.files,
        )
        return await self.inner.plan(sub, roles)
