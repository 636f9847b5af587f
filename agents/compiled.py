"""CompiledPipeline: a validated pipeline that runs tasks (LangGraph macro flow, checkpoints, resume, report)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from pathlib import Path
from typing import Any, Literal

from mdap.checkpoint import RunLock
from mdap.errors import CheckpointError, ConfigError
from mdap.planners import Plan, Planner, Task
from mdap.report import ModuleStats

from ._store import MemoryStore, ResultStore, SqliteStore
from .coordinator import CoordinatorPolicy, SubtaskResult
from .events import EventBus, JsonlTrace
from .graph import Approval, RunContext, build_graph
from .results import RunResult, build_report
from .work import SubtaskRunner
from .worker import Meter, Worker

__all__ = ["CompiledPipeline", "thread_lock"]


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
        runner: SubtaskRunner,
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
            RunInUse: another process runs the same thread on the same checkpoint file (one coordinator per
                run: the lock is held for the whole run and dies with its holder).
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

        SqliteStore.check_file(self.checkpoint, "checkpoint")
        SqliteStore.check_file(SqliteStore.beside(self.checkpoint), "results file of the checkpoint")
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        with RunLock(
            thread_lock(self.checkpoint, thread),
            what=f"pipeline run {thread!r} of checkpoint {self.checkpoint}",
            way_out="use another --thread or --checkpoint",
        ):
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


def thread_lock(checkpoint: Path, thread: str) -> Path:
    """The lock file of one thread (run) of a checkpoint file: ``runs.sqlite.locks/<thread>.lock``.

    Per thread, not per file: runs of other threads share the SQLite file safely (WAL), two coordinators of
    one thread do not. A thread id that is not a plain file name is hashed.
    """
    name = thread if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}", thread) else None
    name = name or "sha256-" + hashlib.sha256(thread.encode()).hexdigest()[:32]
    return checkpoint.with_name(checkpoint.name + ".locks") / f"{name}.lock"


def _meter_stats(meter: Meter | None) -> ModuleStats | None:
    if meter is None:
        return None
    return ModuleStats(steps=meter.calls, usage=meter.usage)


def _diff(before: ModuleStats | None, after: ModuleStats | None) -> ModuleStats | None:
    if before is None or after is None:
        return None
    return ModuleStats(steps=after.steps - before.steps, usage=after.usage - before.usage)
