"""The macro flow as a LangGraph StateGraph: plan -> approve -> execute -> (replan -> approve -> execute | finish).

Each node is one super-step, so a run costs a handful of super-steps however many subtasks its plan has: the
subtasks run inside ``execute`` (see :mod:`mdap.agents.coordinator`). The checkpointed state holds ids and
status only (the task's fingerprint, the plan's number, result fingerprints); the typed values (the task, the
plans, the results) stay in the run's :class:`RunContext` and its result store, which the compiled pipeline
makes for each run and LangGraph hands every node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from inspect import isawaitable
from typing import Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from mdap.errors import ConfigError, PlanError
from mdap.planners import Expander, FailureNote, Plan, Planner, ReplanContext, Task, validate_plan

from ._store import ResultStore
from .coordinator import CoordinatorPolicy, Execution
from .results import SubtaskResult, add_spent
from .work import RunScope, SubtaskRunner

__all__ = ["Approval", "RunContext", "RunState", "build_graph"]

Approval = Callable[[Plan], "bool | Plan | Awaitable[bool | Plan]"]
"""Approves a plan (True), rejects it (False) or returns an edited plan."""


class RunState(TypedDict, total=False):
    """The checkpointed state of a run: ids and status (the values they name are in the result store)."""

    task: str
    """The task's fingerprint (a resume must give the same task)."""
    plan: int
    """The number of the current plan in the store (0 for the first; replans and edits count up)."""
    results: dict[str, str]
    """The last execute pass: subtask id -> fingerprint of its result in the store."""
    failed: list[str]
    not_run: list[str]
    replans: int
    status: str
    error: str | None


@dataclass
class RunContext:
    """One run: the typed values its nodes share, besides the checkpointed ids (made per ``run()``)."""

    task: Task
    planner: Planner
    roles: Mapping[str, str]
    runner: SubtaskRunner
    policy: CoordinatorPolicy
    store: ResultStore
    scope: RunScope
    approval: Approval | Literal["human"] | None = None
    spent: dict[str, dict[str, Any]] = field(default_factory=dict)
    """What each role spent over the run's execute passes, earlier sessions included."""
    results: dict[str, SubtaskResult] | None = None
    """The last execute pass's results, when this session ran it (else read back from the store)."""
    answer: str | None = None

    def plan(self, state: RunState) -> Plan:
        """The run's current plan."""
        if "plan" not in state:
            raise PlanError("the run has no plan yet")
        return self.store.plan(self.scope.thread, state["plan"])

    def keep(self, plan: Plan, state: RunState) -> int:
        """Put a new plan in the store; its number, for the state."""
        number = state.get("plan", -1) + 1
        self.store.put_plan(self.scope.thread, number, plan)
        return number

    def pass_results(self, state: RunState) -> dict[str, SubtaskResult]:
        """The last execute pass's results (read back from the store when an earlier session ran it)."""
        if self.results is None:
            done = self.store.load(self.scope.thread)
            self.results = {}
            for sid, fp in (state.get("results") or {}).items():
                r = done.get(fp)
                if isinstance(r, SubtaskResult):
                    self.results[sid] = replace(r, id=sid, cached=True)
        return self.results


async def _plan(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    plan = validate_plan(await ctx.planner.plan(ctx.task, ctx.roles), ctx.roles, max_subtasks=ctx.policy.max_pending)
    if ctx.scope.events.active:
        ctx.scope.events.emit("plan_created", plan=plan.model_dump(), subtasks=len(plan.subtasks))
    return {"plan": ctx.keep(plan, state), "replans": 0, "status": "planned", "results": {}, "failed": []}


async def _approve(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    approval = ctx.approval
    if approval is None:
        return {"status": "approved"}
    plan = ctx.plan(state)
    verdict: Any
    if approval == "human":
        verdict = interrupt({"plan": plan.model_dump(), "replans": state.get("replans", 0)})
        if isinstance(verdict, dict):
            verdict = Plan.model_validate(verdict)
    else:
        verdict = approval(plan)
        if isawaitable(verdict):
            verdict = await verdict
    update: dict[str, Any] = {}
    if isinstance(verdict, Plan):
        update["plan"] = ctx.keep(validate_plan(verdict, ctx.roles, max_subtasks=ctx.policy.max_pending), state)
        verdict = True
    if not isinstance(verdict, bool):
        raise ConfigError(f"an approval must answer True, False or a Plan, got {type(verdict).__name__}")
    if ctx.scope.events.active:
        ctx.scope.events.emit("plan_approved", approved=verdict)
    return {**update, "status": "approved" if verdict else "rejected"}


async def _execute(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    policy = ctx.policy
    execution = Execution(
        task=ctx.task,
        plan=ctx.plan(state),
        runner=ctx.runner,
        policy=policy,
        store=ctx.store,
        scope=ctx.scope,
        expander=ctx.planner if isinstance(ctx.planner, Expander) else None,
        roles=ctx.roles,
        stop_on_failure=state.get("replans", 0) < policy.max_replans or policy.on_failure == "halt",
    )
    outcome = await execution.run()
    ctx.results = outcome.results
    ctx.spent = add_spent(ctx.spent, outcome.results.values())
    ctx.store.put_spent(ctx.scope.thread, ctx.spent)
    return {
        "results": {sid: execution.nodes[sid].fp for sid in outcome.results},
        "failed": outcome.failed,
        "not_run": outcome.not_run,
        "status": "executed",
    }


def _failures(plan: Plan, results: Mapping[str, SubtaskResult], failed: list[str]) -> list[FailureNote]:
    """What the planner is told of each failed subtask (a nested one by its top-level subtask's instruction)."""
    by_id = plan.by_id()
    notes = []
    for sid in failed:
        top = by_id.get(sid.split("/", 1)[0])
        subtask = by_id.get(sid, top)
        r = results.get(sid)
        role = r.role if r is not None else (subtask.role if subtask else "")
        error = (r.error if r is not None else None) or ""
        notes.append(FailureNote(id=sid, instruction=subtask.instruction if subtask else "", role=role, error=error))
    return notes


async def _replan(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    previous = ctx.plan(state)
    results = ctx.pass_results(state)
    attempt = state.get("replans", 0) + 1
    context = ReplanContext(
        previous=previous,
        failures=_failures(previous, results, state.get("failed", [])),
        completed={sid: (r.answer or "")[:300] for sid, r in results.items() if r.ok and "/" not in sid},
        attempt=attempt,
    )
    try:
        plan = await ctx.planner.plan(ctx.task, ctx.roles, context)
        plan = validate_plan(plan, ctx.roles, max_subtasks=ctx.policy.max_pending)
    except PlanError as err:
        return {"replans": attempt, "status": "replan_failed", "error": f"replan {attempt} failed: {err}"}
    if ctx.scope.events.active:
        ctx.scope.events.emit("replanned", attempt=attempt, failed=state.get("failed", []), plan=plan.model_dump())
    return {"plan": ctx.keep(plan, state), "replans": attempt, "status": "replanned"}


async def _finish(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    if state.get("status") == "rejected":
        return {"status": "rejected", "error": "the plan was not approved"}
    results = ctx.pass_results(state)
    failed = state.get("failed", [])
    sinks = ctx.plan(state).sinks()
    error = state.get("error")
    if state.get("not_run") or any(s not in results or not results[s].ok for s in sinks):
        reasons = [f"{sid}: {(results[sid].error or '') if sid in results else ''}"[:300] for sid in failed[:5]]
        msg = "subtasks failed: " + "; ".join(reasons) if reasons else "the run stopped before every subtask ran"
        return {"status": "failed", "error": f"{error}; {msg}" if error else msg}
    answers = [results[s].answer or "" for s in sinks]
    lines = (f"[{s}] {a}" for s, a in zip(sinks, answers, strict=True))
    ctx.answer = answers[0] if len(answers) == 1 else "\n".join(lines)
    return {"status": "partial" if failed else "ok", "error": error}


# Routers are async: LangGraph runs sync functions in a thread pool, which costs a thread hand-off per call.
async def _after_approve(state: RunState) -> str:
    return "finish" if state.get("status") == "rejected" else "execute"


async def _after_execute(state: RunState, runtime: Runtime[RunContext]) -> str:
    if state.get("failed") and state.get("replans", 0) < runtime.context.policy.max_replans:
        return "replan"
    return "finish"


async def _after_replan(state: RunState) -> str:
    return "finish" if state.get("status") == "replan_failed" else "approve"


def build_graph() -> Any:
    """The uncompiled StateGraph of the macro flow (compile it with or without a checkpointer)."""
    g: StateGraph[RunState, RunContext, RunState, RunState] = StateGraph(RunState, context_schema=RunContext)
    g.add_node("plan", _plan)
    g.add_node("approve", _approve)
    g.add_node("execute", _execute)
    g.add_node("replan", _replan)
    g.add_node("finish", _finish)
    g.add_edge(START, "plan")
    g.add_edge("plan", "approve")
    g.add_conditional_edges("approve", _after_approve, ["execute", "finish"])
    g.add_conditional_edges("execute", _after_execute, ["replan", "finish"])
    g.add_conditional_edges("replan", _after_replan, ["approve", "finish"])
    g.add_edge("finish", END)
    return g
