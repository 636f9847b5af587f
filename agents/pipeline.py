"""Pipeline: the builder users define agent pipelines with, compiled once into a runnable.

    pipeline = (
        Pipeline("report", model=model)
        .planner(LLMPlanner(model))
        .role("researcher", description="finds facts", tools=builtin_tools("work"))
        .role("writer", description="writes prose", voter=Majority(n=3))
        .policy(max_concurrency=16, retries=2)
    )
    result = await pipeline.run("Write a short report on ...")

``compile()`` validates once (roles, models, tools, planner, policy) and returns a :class:`CompiledPipeline`;
``run``/``run_sync`` on the builder compile on first use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from mdap.errors import ConfigError
from mdap.models import ChatModel
from mdap.planners import LLMPlanner, Plan, Planner, Task, validate_plan

from .compiled import CompiledPipeline
from .coordinator import CoordinatorPolicy
from .events import EventBus, Listener
from .graph import Approval
from .results import RunResult
from .roles import WorkerRole, default_voter
from .stream import RunStream
from .tools import Tool
from .work import LocalRunner, SubtaskRunner
from .worker import Worker

__all__ = ["DEFAULT_CHECKPOINT", "CompiledPipeline", "Pipeline", "RunnerFactory"]

DEFAULT_CHECKPOINT = Path(".mdap/pipelines.sqlite")
"""Where runs are checkpointed unless ``.checkpoint(...)`` says otherwise."""

RunnerFactory = Callable[[Mapping[str, Worker]], SubtaskRunner]
"""Builds the subtask runner from the compiled workers (the seam where a worker pool plugs in)."""


class Pipeline:
    """Builds a planner -> coordinator -> worker pipeline (each method returns the builder).

    Args:
        name: names the pipeline in reports.
        model: the default model of the planner and of roles that name none.
    """

    def __init__(self, name: str = "pipeline", *, model: ChatModel | None = None) -> None:
        self.name = name
        self.model = model
        self._planner: Planner | None = None
        self._roles: dict[str, WorkerRole] = {}
        self._policy = CoordinatorPolicy()
        self._approval: Approval | Literal["human"] | None = None
        self._checkpoint: Path | None = DEFAULT_CHECKPOINT
        self._runner: RunnerFactory | None = None
        self._events = EventBus()
        self._trace: Path | None = None
        self._compiled: CompiledPipeline | None = None

    @property
    def roles(self) -> tuple[WorkerRole, ...]:
        """The roles added so far, in order."""
        return tuple(self._roles.values())

    def planner(self, planner: Planner) -> Pipeline:
        """Set the planner (default: ``LLMPlanner(model)``)."""
        self._planner = planner
        return self._changed()

    def role(self, role: str | WorkerRole, /, **fields: Any) -> Pipeline:
        """Add a worker role: a :class:`WorkerRole`, or its name and fields (``description=``, ``tools=``, ...).

        Raises:
            ConfigError: the role name is taken, or a field is unknown.
        """
        if isinstance(role, str):
            try:
                role = WorkerRole(role, **fields)
            except TypeError as err:
                raise ConfigError(f"role {role!r}: {err}") from None
        elif fields:
            raise ConfigError("pass either a WorkerRole or a name with fields, not both")
        if role.name in self._roles:
            raise ConfigError(f"role {role.name!r} is defined twice")
        self._roles[role.name] = role
        return self._changed()

    def policy(self, policy: CoordinatorPolicy | None = None, /, **fields: Any) -> Pipeline:
        """Set the coordinator policy, or change some of its fields (see :class:`CoordinatorPolicy`)."""
        base = policy or self._policy
        self._policy = base.model_copy(update=fields) if fields else base
        if fields:
            self._policy = CoordinatorPolicy.model_validate(self._policy.model_dump())
        return self._changed()

    def approval(self, approval: Approval | Literal["human"] | None) -> Pipeline:
        """Approve plans before they run: a function of the plan (True, False or an edited plan), ``"human"``
        (the run pauses with status ``awaiting_approval``; answer with ``run(..., resume=True, approve=...)``),
        or None (no approval, the default)."""
        self._approval = approval
        return self._changed()

    def checkpoint(self, path: str | Path | None) -> Pipeline:
        """The SQLite file runs are checkpointed to (default ``.mdap/pipelines.sqlite``); None = in memory,
        no resume."""
        self._checkpoint = Path(path) if path is not None else None
        return self._changed()

    def runner(self, factory: RunnerFactory | None) -> Pipeline:
        """Run subtasks through a custom subtask runner (e.g. a worker pool) built from the compiled workers."""
        self._runner = factory
        return self._changed()

    def on(self, kind: str, listener: Listener) -> Pipeline:
        """Call ``listener(event)`` for events of ``kind`` (``"*"`` = all); see :mod:`mdap.agents.events`."""
        self._events.on(kind, listener)
        return self._changed()

    def trace(self, path: str | Path | None, *, detail: Literal["counts", "full"] = "counts") -> Pipeline:
        """Write every event of each run as JSON lines to ``path`` (secrets redacted).

        Args:
            path: the JSONL file (None: no trace file).
            detail: ``"counts"`` (ids, counts, answers cut short), or ``"full"``: also every sample's text, the
                losing answers and tool inputs and outputs (in the events every listener hears, too).

        Raises:
            ConfigError: an unknown ``detail``.
        """
        if detail not in ("counts", "full"):
            raise ConfigError(f"trace detail must be 'counts' or 'full', got {detail!r}")
        self._trace = Path(path) if path is not None else None
        self._events.detail = detail
        return self._changed()

    def _changed(self) -> Pipeline:
        self._compiled = None
        return self

    def compile(self) -> CompiledPipeline:
        """Validate everything once and return the runnable pipeline.

        Raises:
            ConfigError: no roles, a role without a model, something that is not a ChatModel, a Tool, a voter
                or a planner, or a human approval without a checkpoint.
        """
        if not self._roles:
            raise ConfigError("a pipeline needs at least one role: .role('worker', description=...)")
        if self.model is not None and not isinstance(self.model, ChatModel):
            raise ConfigError(f"model must be a ChatModel (an object with async sample()), got {type(self.model)}")
        workers = {name: self._worker(role) for name, role in self._roles.items()}
        planner = self._checked_planner()
        if self._approval == "human" and self._checkpoint is None:
            raise ConfigError("approval='human' pauses the run in a checkpoint: set .checkpoint(path)")
        runner = self._runner(workers) if self._runner is not None else LocalRunner(workers)
        self._compiled = CompiledPipeline(
            name=self.name,
            planner=planner,
            roles={r.name: r.description for r in self._roles.values()},
            workers=workers,
            runner=runner,
            policy=self._policy,
            approval=self._approval,
            checkpoint=self._checkpoint,
            events=self._events,
            trace=self._trace,
        )
        return self._compiled

    def _worker(self, role: WorkerRole) -> Worker:
        """The compiled worker of ``role``: its model (or the pipeline's), its tools, its voter with its adapter."""
        model = role.model or self.model
        if model is None:
            raise ConfigError(f"role {role.name!r} has no model and the pipeline has no default model")
        if not isinstance(model, ChatModel):
            raise ConfigError(f"role {role.name!r}: model must be a ChatModel, got {type(model).__name__}")
        for tool in role.tools:
            if not isinstance(tool, Tool):
                raise ConfigError(f"role {role.name!r}: tools must be mdap.agents.Tool, got {type(tool).__name__}")
        voter = role.voter or default_voter()
        if not callable(getattr(voter, "decide", None)):
            raise ConfigError(f"role {role.name!r}: voter must have decide(model, messages, parse)")
        if role.adapter is not None and dataclasses.is_dataclass(voter) and getattr(voter, "adapter", 1) is None:
            voter = dataclasses.replace(voter, adapter=role.adapter)
        return Worker(role, model, voter)

    def _checked_planner(self) -> Planner:
        """The planner (default: an LLMPlanner of the pipeline's model); a plan written in code is validated now."""
        planner = self._planner
        if planner is None:
            if self.model is None:
                raise ConfigError("set a planner (.planner(...)) or a default model for the LLMPlanner")
            planner = LLMPlanner(self.model)
        if not callable(getattr(planner, "plan", None)):
            raise ConfigError(f"the planner must have async plan(task, roles, context), got {type(planner).__name__}")
        fixed = getattr(planner, "plan_fn", None)
        if isinstance(fixed, Plan):  # a plan written in code: check its roles now, not at the first run
            validate_plan(fixed, self._roles, max_subtasks=self._policy.max_pending)
        return planner

    async def run(self, task: str | Task, **kwargs: Any) -> RunResult:
        """Compile (once) and run; see :meth:`CompiledPipeline.run`."""
        return await (self._compiled or self.compile()).run(task, **kwargs)

    def stream(self, task: str | Task, **kwargs: Any) -> RunStream:
        """Compile (once) and stream one run's events; see :meth:`CompiledPipeline.stream`."""
        return (self._compiled or self.compile()).stream(task, **kwargs)

    def run_sync(self, task: str | Task, **kwargs: Any) -> RunResult:
        """Compile (once) and run to completion from synchronous code."""
        return (self._compiled or self.compile()).run_sync(task, **kwargs)
