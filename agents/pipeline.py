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

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from mdap.errors import CheckpointError, ConfigError
from mdap.models import ChatModel
from mdap.planners import LLMPlanner, Plan, Planner, Task
from mdap.report import ModuleStats

from ._store import MemoryStore, ResultStore, SqliteStore
from .coordinator import CoordinatorPolicy, SubtaskResult
from .events import EventBus, JsonlTrace, Listener
from .graph import Approval, RunContext, build_graph
from .result import RunResult, build_report
from .roles import WorkerRole, default_voter
from .tools import Tool
from .work import LocalRunner, StepRunner
from .worker import Meter, Worker

__all__ = ["DEFAULT_CHECKPOINT", "CompiledPipeline", "Pipeline", "RunnerFactory"]

DEFAULT_CHECKPOINT = Path(".mdap/pipelines.sqlite")
"""Where runs are checkpointed unless ``.checkpoint(...)`` says otherwise."""

RunnerFactory = Callable[[Mapping[str, Worker]], StepRunner]
"""Builds the step runner from the compiled workers (the seam where a worker pool plugs in)."""


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
        """Run subtasks through a custom step runner (e.g. a worker pool) built from the compiled workers."""
        self._runner = factory
        return self._changed()

    def on(self, kind: str, listener: Listener) -> Pipeline:
        """Call ``listener(event)`` for events of ``kind`` (``"*"`` = all); see :mod:`mdap.agents.events`."""
        self._events.on(kind, listener)
        return self._changed()

    def trace(self, path: str | Path | None) -> Pipeline:
        """Write every event of each run as JSON lines to ``path``."""
        self._trace = Path(path) if path is not None else None
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
        workers: dict[str, Worker] = {}
        for role in self._roles.values():
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
            workers[role.name] = Worker(role, model, voter, self._events)
        planner = self._planner
        if planner is None:
            if self.model is None:
                raise ConfigError("set a planner (.planner(...)) or a default model for the LLMPlanner")
            planner = LLMPlanner(self.model)
        if not callable(getattr(planner, "plan", None)):
            raise ConfigError(f"the planner must have async plan(task, roles, context), got {type(planner).__name__}")
        planner, meter = _metered(planner)
        if self._approval == "human" and self._checkpoint is None:
            raise ConfigError("approval='human' pauses the run in a checkpoint: set .checkpoint(path)")
        runner = self._runner(workers) if self._runner is not None else LocalRunner(workers)
        self._compiled = CompiledPipeline(
            name=self.name,
            planner=planner,
            planner_meter=meter,
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

    async def run(self, task: str | Task, **kwargs: Any) -> RunResult:
        """Compile (once) and run; see :meth:`CompiledPipeline.run`."""
        return await (self._compiled or self.compile()).run(task, **kwargs)

    def run_sync(self, task: str | Task, **kwargs: Any) -> RunResult:
        """Compile (once) and run to completion from synchronous code."""
        return (self._compiled or self.compile()).run_sync(task, **kwargs)


def _metered(planner: Planner) -> tuple[Planner, Meter | None]:
    """Wrap the model of an LLM-backed planner (also inside a RecursivePlanner) in a Meter for the report."""
    if dataclasses.is_dataclass(planner) and not isinstance(planner, type):
        names = {f.name for f in dataclasses.fields(planner)}
        if "model" in names and isinstance(getattr(planner, "model", None), ChatModel):
            meter = Meter(planner.model)
            return dataclasses.replace(planner, model=meter), meter
        if "inner" in names:
            inner, meter = _metered(planner.inner)
            return dataclasses.replace(planner, inner=inner), meter
    return planner, None


class CompiledPipeline:
    """A validated pipeline, ready to run (made by :meth:`Pipeline.compile`)."""

    def __init__(
        self,
        *,
        name: str,
        planner: Planner,
        planner_meter: Meter | None,
        roles: dict[str, str],
        workers: dict[str, Worker],
        runner: StepRunner,
        policy: CoordinatorPolicy,
        approval: Approval | Literal["human"] | None,
        checkpoint: Path | None,
        events: EventBus,
        trace: Path | None,
    ) -> None:
        self.name = name
        self.planner = planner
        self.planner_meter = planner_meter
        self.roles = roles
        self.workers = workers
        self.runner = runner
        self.policy = policy
        self.approval = approval
        self.checkpoint = checkpoint
        self.events = events
        self.trace = trace
        self.graph = build_graph().compile()
        self._memory = MemoryStore()

    def run_sync(self, task: str | Task, **kwargs: Any) -> RunResult:
        """:meth:`run` from synchronous code.

        Raises:
            ConfigError: called from inside a running event loop (use ``await run(...)`` there).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(task, **kwargs))
        raise ConfigError("run_sync() was called inside an event loop; use `await pipeline.run(...)` instead")

    async def run(
        self,
        task: str | Task,
        *,
        thread_id: str | None = None,
        resume: bool = False,
        approve: bool | Plan | None = None,
    ) -> RunResult:
        """Plan, (approve,) execute, replan on failure, and return the result.

        Args:
            task: the task text or a :class:`~mdap.planners.Task`.
            thread_id: names the run in the checkpoint; default: derived from the task text.
            resume: continue the checkpointed run of ``thread_id`` (finished subtasks are not redone).
            approve: the answer to a pending human approval (with ``resume=True``).

        Raises:
            PlanError: the planner could not make a valid plan.
            CheckpointError: ``resume`` with no checkpointed run of that thread, or of another task.
            ConfigError: ``resume`` without a checkpoint file, or a pending approval with no ``approve``.
        """
        task = Task(text=task) if isinstance(task, str) else task
        thread = thread_id or "task-" + hashlib.sha256(task.model_dump_json().encode()).hexdigest()[:16]
        events = self.events.copy()
        trace = JsonlTrace(self.trace) if self.trace else None
        if trace is not None:
            events.on("*", trace)
        before = _meter_stats(self.planner_meter)
        t0 = time.perf_counter()
        config: dict[str, Any] = {"configurable": {"thread_id": thread}, "recursion_limit": 100}
        try:
            ctx = self._context(thread, events)
            final = await self._invoke(task, thread, config, ctx, resume, approve)
            result = self._result(final, ctx, task, thread, resume, time.perf_counter() - t0, before)
            if events.active:
                events.emit(
                    "run_finished", status=result.status, answer=(result.answer or "")[:500], error=result.error
                )
        finally:
            if trace is not None:
                trace.close()
        return result

    async def _invoke(
        self,
        task: Task,
        thread: str,
        config: dict[str, Any],
        ctx: RunContext,
        resume: bool,
        approve: bool | Plan | None,
    ) -> dict[str, Any]:
        if self.checkpoint is None:
            if resume:
                raise ConfigError("resume needs a checkpoint file: .checkpoint(path)")
            store: ResultStore = self._memory
            store.clear(thread)
            ctx.store = store
            final: dict[str, Any] = await self.graph.ainvoke({"task": task.model_dump()}, config, context=ctx)
            return final
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(SqliteStore.beside(self.checkpoint))
        try:
            async with AsyncSqliteSaver.from_conn_string(str(self.checkpoint)) as saver:
                graph = self.graph.copy(update={"checkpointer": saver})
                ctx.store = store
                inp = await self._input(graph, saver, store, config, task, thread, resume, approve)
                final = await graph.ainvoke(inp, config, context=ctx)
                return final
        finally:
            store.close()

    def _context(self, thread: str, events: EventBus) -> RunContext:
        for worker in self.workers.values():
            worker.events = events
        return RunContext(
            planner=self.planner,
            roles=self.roles,
            runner=self.runner,
            policy=self.policy,
            store=self._memory,
            thread=thread,
            events=events,
            approval=self.approval,
        )

    async def _input(
        self,
        graph: Any,
        saver: Any,
        store: ResultStore,
        config: dict[str, Any],
        task: Task,
        thread: str,
        resume: bool,
        approve: bool | Plan | None,
    ) -> Any:
        from langgraph.types import Command

        await saver.setup()
        if not resume:
            await saver.adelete_thread(thread)
            store.clear(thread)
            return {"task": task.model_dump()}
        snapshot = await graph.aget_state(config)
        if not snapshot.values:
            raise CheckpointError(f"nothing to resume: thread {thread!r} has no checkpoint; run without resume")
        if snapshot.values.get("task") != task.model_dump():
            raise CheckpointError(f"thread {thread!r} ran another task; use another thread_id or the same task")
        if not snapshot.next:
            raise CheckpointError(f"thread {thread!r} already finished; run without resume to start again")
        if snapshot.interrupts:
            if approve is None:
                raise ConfigError("the run is waiting for plan approval: pass approve=True, False or a Plan")
            return Command(resume=approve.model_dump() if isinstance(approve, Plan) else approve)
        return None

    def _result(
        self,
        final: dict[str, Any],
        ctx: RunContext,
        task: Task,
        thread: str,
        resumed: bool,
        wall: float,
        before: ModuleStats | None,
    ) -> RunResult:
        records = final.get("results") or {}
        if ctx.last is not None and ctx.last[0] is records:
            results = ctx.last[1]  # the same pass, not read back from a checkpoint: no need to rebuild
        else:
            results = {sid: SubtaskResult.from_record(r) for sid, r in records.items()}
        planner_stats = _diff(before, _meter_stats(self.planner_meter))
        plan = ctx.plan_of(final["plan"]) if final.get("plan") else None
        status = final.get("status", "failed")
        if "__interrupt__" in final:
            status = "awaiting_approval"
        report = build_report(
            self.name,
            results,
            not_run=len(final.get("not_run") or []),
            wall_seconds=wall,
            planner=planner_stats,
            error=final.get("error"),
            resumed=resumed,
            spent=final.get("spent") or {},
        )
        return RunResult.model_construct(  # every field is built and checked above: skip re-validating
            status=status,
            answer=final.get("answer"),
            task=task,
            plan=plan,
            results=results,
            failed=[f["id"] for f in final.get("failures") or []],
            replans=final.get("replans", 0),
            thread_id=thread,
            error=final.get("error"),
            report=report,
        )


def _meter_stats(meter: Meter | None) -> ModuleStats | None:
    if meter is None:
        return None
    return ModuleStats(
        steps=meter.calls,
        samples=meter.samples,
        completion_tokens=meter.completion_tokens,
        prompt_tokens=meter.prompt_tokens,
        cost=meter.cost,
        model_seconds=meter.seconds,
    )


def _diff(before: ModuleStats | None, after: ModuleStats | None) -> ModuleStats | None:
    if before is None or after is None:
        return None
    return ModuleStats(
        steps=after.steps - before.steps,
        samples=after.samples - before.samples,
        completion_tokens=after.completion_tokens - before.completion_tokens,
        prompt_tokens=after.prompt_tokens - before.prompt_tokens,
        cost=after.cost - before.cost,
        model_seconds=after.model_seconds - before.model_seconds,
    )
