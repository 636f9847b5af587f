"""StaticPlanner: deterministic plans written in Python (fork/join, chains), validated like any other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from inspect import isawaitable

from mdap.errors import ConfigError, PlanError

from .plan import Plan, ReplanContext, Subtask, Task, validate_plan

__all__ = ["PlanFn", "StaticPlanner", "chain", "fork_join"]

PlanFn = Callable[[Task], "Plan | Awaitable[Plan]"]
"""Builds the plan for a task (sync or async)."""

ReplanFn = Callable[[Task, ReplanContext], "Plan | Awaitable[Plan]"]
"""Builds the plan after a failure (sync or async)."""


@dataclass
class StaticPlanner:
    """A planner that returns a plan written in code.

    Args:
        plan_fn: the plan, or a function of the task that builds it.
        replan_fn: builds a new plan from the failure context; None means a replan runs the same plan again
            (completed subtasks keep their results, failed ones get another set of retries).
        max_subtasks: reject plans with more subtasks; None = no cap.

    Example::

        StaticPlanner(fork_join(["summarize part 1", "summarize part 2"], worker="writer",
                                join="merge the summaries", joiner="writer"))
    """

    plan_fn: Plan | PlanFn
    replan_fn: ReplanFn | None = None
    max_subtasks: int | None = None

    async def plan(self, task: Task, roles: Mapping[str, str], context: ReplanContext | None = None) -> Plan:
        """The written plan (or the replan's), validated against ``roles``.

        Raises:
            PlanError: the plan is invalid (a programming error in the plan function: fix the plan).
        """
        if context is not None:
            if self.replan_fn is None:
                return validate_plan(context.previous, roles, max_subtasks=self.max_subtasks)
            made = self.replan_fn(task, context)
        else:
            made = self.plan_fn(task) if callable(self.plan_fn) else self.plan_fn
        if isawaitable(made):
            made = await made
        if not isinstance(made, Plan):
            raise PlanError(f"the static plan function returned {type(made).__name__}, not a Plan")
        return validate_plan(made, roles, max_subtasks=self.max_subtasks)


def fork_join(
    instructions: Sequence[str],
    *,
    worker: str,
    join: str | None = None,
    joiner: str | None = None,
    prefix: str = "part",
) -> Plan:
    """A fan-out of ``instructions`` (one subtask each, role ``worker``), joined by one ``join`` subtask.

    Raises:
        ConfigError: no instructions.
    """
    if not instructions:
        raise ConfigError("fork_join needs at least one instruction")
    parts = [Subtask(id=f"{prefix}{i}", instruction=text, role=worker) for i, text in enumerate(instructions)]
    if join is None:
        return Plan(subtasks=parts)
    merge = Subtask(id="join", instruction=join, role=joiner or worker, depends_on=[p.id for p in parts])
    return Plan(subtasks=[*parts, merge])


def chain(instructions: Sequence[str], *, role: str, prefix: str = "step") -> Plan:
    """A sequence of subtasks, each depending on the one before.

    Raises:
        ConfigError: no instructions.
    """
    if not instructions:
        raise ConfigError("chain needs at least one instruction")
    out: list[Subtask] = []
    for i, text in enumerate(instructions):
        out.append(Subtask(id=f"{prefix}{i}", instruction=text, role=role, depends_on=[out[-1].id] if out else []))
    return Plan(subtasks=out)
