"""CompiledPipeline: a validated pipeline that runs tasks (LangGraph macro flow, checkpoints, resume, report).

Its parts (planner, workers, runner, graph) are shared by its runs; everything of one run (its id, events and
trace, planner meter, result store, plans and results) lives in the :class:`RunContext` that :meth:`run` makes,
so concurrent runs of one compiled pipeline are independent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from mdap.checkpoint import RunLock
from mdap.errors import CheckpointError, ConfigError
from mdap.models import ChatModel
from mdap.planners import Plan, Planner, Task
from mdap.report import ModuleStats

from ._store import MemoryStore, ResultStore, SqliteStore
from .coordinator import CoordinatorPolicy
from .events import EventBus, JsonlTrace, Listener
from .graph import Approval, RunContext, RunState, build_graph
from .results import RunResult, build_report
from .stream import RunStream
from .work import RunScope, SubtaskRunner
from .worker import Meter, Worker

__all__ = ["CompiledPipeline", "thread_lock"]


class CompiledPipeline:
    """A validated pipeline, ready to run (made by :meth:`Pipeline.compile`)."""

    def __init__(
        self,
        *,
        name: str,
        planner: Planner,
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
        self.roles = roles
        self.workers = workers
        self.runner = runner
        self.policy = policy
        self.approval = approval
        self.checkpoint = checkpoint
        self.events = events
        self.trace = trace
        self.graph = build_graph().compile()

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
        listener: Listener | None = None,
    ) -> RunResult:
        """Plan, (approve,) execute, replan on failure, and return the result.

        Args:
            task: the task text or a :class:`~mdap.planners.Task`.
            thread_id: names the run in the checkpoint; default: derived from the task text.
            resume: continue the checkpointed run of ``thread_id`` (finished subtasks are not redone).
            approve: the answer to a pending human approval (with ``resume=True``).
            listener: hears every event of this run only (the pipeline's listeners hear every run).

        Raises:
            PlanError: the planner could not make a valid plan.
            RunInUse: another process runs the same thread on the same checkpoint file (one coordinator per
                run: the lock is held for the whole run and dies with its holder).
            CheckpointError: ``resume`` with no checkpointed run of that thread, or of another task.
            ConfigError: ``resume`` without a checkpoint file, or a pending approval with no ``approve``.
        """
        task = Task(text=task) if isinstance(task, str) else task
        key = hashlib.sha256(task.model_dump_json().encode()).hexdigest()
        planner, meter = _metered(self.planner)
        t0 = time.perf_counter()
        thread = thread_id or "task-" + key[:16]
        with self._open_scope(thread, listener) as scope, self._open_store(scope.thread) as store:
            ctx = RunContext(
                task=task,
                planner=planner,
                roles=self.roles,
                runner=self.runner,
                policy=self.policy,
                store=store,
                scope=scope,
                approval=self.approval,
            )
            final = await self._invoke(ctx, key, resume, approve)
            result = self._result(final, ctx, resume, time.perf_counter() - t0, meter)
            if scope.events.active:
                answer = (result.answer or "")[:500]
                scope.events.emit("run_finished", status=result.status, answer=answer, error=result.error)
        return result

    def stream(self, task: str | Task, **kwargs: Any) -> RunStream:
        """Run ``task`` and iterate its events as they happen (``plan_created`` first, ``run_finished`` last);
        the :class:`RunStream`'s ``result`` holds the RunResult after the loop. ``kwargs`` as :meth:`run`."""
        return RunStream(lambda listener: self.run(task, listener=listener, **kwargs))

    @contextmanager
    def _open_scope(self, thread: str, listener: Listener | None = None) -> Iterator[RunScope]:
        """The run's scope: a new run id, and the pipeline's listeners, the run's own and its trace file (closed
        after)."""
        events = self.events.copy(thread=thread)
        if listener is not None:
            events.on("*", listener)
        trace = JsonlTrace(self.trace) if self.trace else None
        if trace is not None:
            events.on("*", trace)
        try:
            yield RunScope(uuid.uuid4().hex[:12], thread, events)
        finally:
            if trace is not None:
                trace.close()

    @contextmanager
    def _open_store(self, thread: str) -> Iterator[ResultStore]:
        """The run's result store: in memory, or beside the checkpoint file under the thread's lock."""
        if self.checkpoint is None:
            yield MemoryStore()
            return
        results = SqliteStore.beside(self.checkpoint)
        SqliteStore.check_file(self.checkpoint, "checkpoint")
        SqliteStore.check_file(results, "results file of the checkpoint")
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        with RunLock(
            thread_lock(self.checkpoint, thread),
            what=f"pipeline run {thread!r} of checkpoint {self.checkpoint}",
            way_out="use another --thread or --checkpoint",
        ):
            store = SqliteStore(results)
            try:
                yield store
            finally:
                store.close()

    async def _invoke(self, ctx: RunContext, key: str, resume: bool, approve: bool | Plan | None) -> RunState:
        """Run the graph for ``ctx`` (from the start, or on from the thread's checkpoint); its final state."""
        config: dict[str, Any] = {"configurable": {"thread_id": ctx.scope.thread}, "recursion_limit": 100}
        if self.checkpoint is None:
            if resume:
                raise ConfigError("resume needs a checkpoint file: .checkpoint(path)")
            final: RunState = await self.graph.ainvoke({"task": key}, config, context=ctx)
            return final
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(str(self.checkpoint)) as saver:
            graph = self.graph.copy(update={"checkpointer": saver})
            inp = await self._input(graph, saver, ctx, config, key, resume, approve)
            ctx.spent = ctx.store.spent(ctx.scope.thread)
            final = await graph.ainvoke(inp, config, context=ctx)
            return final

    async def _input(
        self,
        graph: Any,
        saver: Any,
        ctx: RunContext,
        config: dict[str, Any],
        key: str,
        resume: bool,
        approve: bool | Plan | None,
    ) -> Any:
        """The graph's input: a new run's state, None to go on from the checkpoint, or an approval's answer."""
        from langgraph.types import Command

        thread = ctx.scope.thread
        await saver.setup()
        if not resume:
            await saver.adelete_thread(thread)
            ctx.store.clear(thread)
            return {"task": key}
        snapshot = await graph.aget_state(config)
        if not snapshot.values:
            raise CheckpointError(f"nothing to resume: thread {thread!r} has no checkpoint; run without resume")
        if snapshot.values.get("task") != key:
            raise CheckpointError(f"thread {thread!r} ran another task; use another thread_id or the same task")
        if not snapshot.next:
            raise CheckpointError(f"thread {thread!r} already finished; run without resume to start again")
        if snapshot.interrupts:
            if approve is None:
                raise ConfigError("the run is waiting for plan approval: pass approve=True, False or a Plan")
            return Command(resume=approve.model_dump() if isinstance(approve, Plan) else approve)
        return None

    def _result(self, final: RunState, ctx: RunContext, resumed: bool, wall: float, meter: Meter | None) -> RunResult:
        """The RunResult of the graph's final state, with the typed values of ``ctx``."""
        results = ctx.pass_results(final)
        status = "awaiting_approval" if "__interrupt__" in final else final.get("status", "failed")
        error = final.get("error")
        report = build_report(
            self.name,
            results,
            not_run=len(final.get("not_run") or []),
            wall_seconds=wall,
            planner=_meter_stats(meter),
            error=error,
            resumed=resumed,
            spent=ctx.spent,
        )
        return RunResult.model_construct(  # every field is built and checked above: skip re-validating
            status=status,
            answer=ctx.answer,
            task=ctx.task,
            plan=ctx.plan(final) if "plan" in final else None,
            results=results,
            failed=list(final.get("failed") or []),
            replans=final.get("replans", 0),
            thread_id=ctx.scope.thread,
            error=error,
            report=report,
        )


def _metered(planner: Planner) -> tuple[Planner, Meter | None]:
    """A copy of an LLM-backed planner (also inside a RecursivePlanner) whose model is wrapped in a new Meter,
    for one run's report."""
    if dataclasses.is_dataclass(planner) and not isinstance(planner, type):
        names = {f.name for f in dataclasses.fields(planner)}
        if "model" in names and isinstance(getattr(planner, "model", None), ChatModel):
            meter = Meter(planner.model)
            return dataclasses.replace(planner, model=meter), meter
        if "inner" in names:
            inner, meter = _metered(planner.inner)
            return dataclasses.replace(planner, inner=inner), meter
    return planner, None


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
