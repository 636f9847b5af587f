"""The macro flow as a LangGraph StateGraph: plan -> approve -> execute -> (replan -> approve -> execute | finish).

Each node is one super-step, so a run costs a handful of super-steps however many subtasks its plan has: the
subtasks run inside ``execute`` (see :mod:`mdap.agents.coordinator`). Per-run objects (planner, step runner,
store, events) reach the nodes through LangGraph's run context, never through the checkpointed state, which
holds only JSON-able data: the task, the plan, the results, the failures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from mdap.errors import ConfigError, PlanError
from mdap.planners import Expander, FailureNote, Plan, Planner, ReplanContext, Task, validate_plan

from ._store import ResultStore
from .coordinator import CoordinatorPolicy, Execution, SubtaskResult
from .events import EventBus
from .results import add_spent
from .work import SubtaskRunner

__all__ = ["Approval", "RunContext", "RunState", "build_graph"]

Approval = Callable[[Plan], "bool | Plan | Awaitable[bool | Plan]"]
"""Approves a plan (True), rejects it (False) or returns an edited plan."""


class RunState(TypedDict, total=False):
    """The checkpointed state of a run (JSON-able)."""

    task: dict[str, Any]
    plan: dict[str, Any] | None
    results: dict[str, dict[str, Any]]
    failures: list[dict[str, Any]]
    not_run: list[str]
    replans: int
    spent: dict[str, dict[str, Any]]
    status: str
    answer: str | None
    error: str | None


@dataclass
class RunContext:
    """Everything a run's nodes need that is not state (LangGraph passes it as the run context)."""

    planner: Planner
    roles: Mapping[str, str]
    runner: SubtaskRunner
    policy: CoordinatorPolicy
    store: ResultStore
    thread: str
    events: EventBus
    approval: Approval | Literal["human"] | None = None
    _plans: dict[int, tuple[dict[str, Any], Plan]] = field(default_factory=dict)
    last: tuple[dict[str, Any], dict[str, SubtaskResult]] | None = None
    """The last execute pass's state records and the results they came from (to skip rebuilding them)."""

    def plan_of(self, data: dict[str, Any] | None) -> Plan:
        """``Plan.model_validate(data)``, cached for the very dict a node returned (no checkpoint round trip):
        validating a 10,000-subtask plan costs ~60 ms, and several nodes read the plan."""
        if data is None:
            raise PlanError("the run has no plan yet")
        hit = self._plans.get(id(data))
        if hit is not None and hit[0] is data:
            return hit[1]
        plan = Plan.model_validate(data)
        self._plans[id(data)] = (data, plan)  # holds the dict, so its id is not reused while cached
        return plan

    def dump(self, plan: Plan) -> dict[str, Any]:
        """``plan.model_dump()``, remembered so :meth:`plan_of` finds it without validating again."""
        data = plan.model_dump()
        self._plans[id(data)] = (data, plan)
        return data


async def _plan(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    task = Task.model_validate(state["task"])
    plan = validate_plan(await ctx.planner.plan(task, ctx.roles), ctx.roles, max_subtasks=ctx.policy.max_pending)
    if ctx.events.active:
        ctx.events.emit("plan_created", plan=plan.model_dump(), subtasks=len(plan.subtasks))
    return {"plan": ctx.dump(plan), "replans": 0, "status": "planned", "results": {}, "failures": []}


async def _approve(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    approval = ctx.approval
    if approval is None:
        return {"status": "approved"}
    plan = ctx.plan_of(state["plan"])
    verdict: Any
    if approval == "human":
        verdict = interrupt({"plan": plan.model_dump(), "replans": state.get("replans", 0)})
        if isinstance(verdict, dict):
            verdict = Plan.model_validate(verdict)
    else:
        verdict = approval(plan)
        if isawaitable(verdict):
            verdict = await verdict
    if isinstance(verdict, Plan):
        plan = validate_plan(verdict, ctx.roles, max_subtasks=ctx.policy.max_pending)
        verdict = True
    if not isinstance(verdict, bool):
        raise ConfigError(f"an approval must answer True, False or a Plan, got {type(verdict).__name__}")
    if ctx.events.active:
        ctx.events.emit("plan_approved", approved=verdict)
    return {"status": "approved" if verdict else "rejected", "plan": ctx.dump(plan)}


async def _execute(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    plan = ctx.plan_of(state["plan"])
    policy = ctx.policy
    replans = state.get("replans", 0)
    can_replan = replans < policy.max_replans
    expander = ctx.planner if isinstance(ctx.planner, Expander) else None
    execution = Execution(
        task=Task.model_validate(state["task"]),
        plan=plan,
        runner=ctx.runner,
        policy=policy,
        store=ctx.store,
        thread=ctx.thread,
        events=ctx.events,
        expander=expander,
        roles=ctx.roles,
        stop_on_failure=can_replan or policy.on_failure == "halt",
    )
    outcome = await execution.run()
    spent = add_spent(state.get("spent") or {}, outcome.results.values())
    by_id = plan.by_id()
    failures = []
    for sid in outcome.failed:
        r = outcome.results[sid]
        top = by_id.get(sid.split("/", 1)[0])
        instruction = by_id[sid].instruction if sid in by_id else (top.instruction if top else "")
        failures.append(FailureNote(id=sid, instruction=instruction, role=r.role, error=r.error or "").model_dump())
    records = execution.records
    results = {sid: records.get(sid) or r.to_record() for sid, r in outcome.results.items()}
    ctx.last = (results, outcome.results)
    return {
        "results": results,
        "failures": failures,
        "not_run": outcome.not_run,
        "spent": spent,
        "status": "executed",
    }


async def _replan(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    previous = ctx.plan_of(state["plan"])
    results = state.get("results", {})
    completed = {sid: (r.get("answer") or "")[:300] for sid, r in results.items() if r["status"] == "ok"}
    attempt = state.get("replans", 0) + 1
    context = ReplanContext(
        previous=previous,
        failures=[FailureNote.model_validate(f) for f in state.get("failures", [])],
        completed={sid: a for sid, a in completed.items() if "/" not in sid},
        attempt=attempt,
    )
    try:
        plan = await ctx.planner.plan(Task.model_validate(state["task"]), ctx.roles, context)
        plan = validate_plan(plan, ctx.roles, max_subtasks=ctx.policy.max_pending)
    except PlanError as err:
        return {"replans": attempt, "status": "replan_failed", "error": f"replan {attempt} failed: {err}"}
    if ctx.events.active:
        ctx.events.emit(
            "replanned", attempt=attempt, failed=[f["id"] for f in state.get("failures", [])], plan=plan.model_dump()
        )
    return {"plan": ctx.dump(plan), "replans": attempt, "status": "replanned"}


async def _finish(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    status = state.get("status")
    if status == "rejected":
        return {"status": "rejected", "answer": None, "error": "the plan was not approved"}
    plan = runtime.context.plan_of(state["plan"])
    results = state.get("results", {})
    failures = state.get("failures", [])
    sinks = plan.sinks()
    bad = [s for s in sinks if results.get(s, {}).get("status") != "ok"]
    error = state.get("error")
    if bad or state.get("not_run"):
        reasons = [f"{f['id']}: {f['error'][:300]}" for f in failures[:5]]
        msg = "subtasks failed: " + "; ".join(reasons) if reasons else "the run stopped before every subtask ran"
        return {"status": "failed", "answer": None, "error": f"{error}; {msg}" if error else msg}
    answers = [results[s]["answer"] for s in sinks]
    answer = answers[0] if len(answers) == 1 else "\n".join(f"[{s}] {a}" for s, a in zip(sinks, answers, strict=True))
    return {"status": "partial" if failures else "ok", "answer": answer, "error": error}


# Routers are async: LangGraph runs sync functions in a thread pool, which costs a thread hand-off per call.
async def _after_approve(state: RunState) -> str:
    return "finish" if state.get("status") == "rejected" else "execute"


async def _after_execute(state: RunState, runtime: Runtime[RunContext]) -> str:
    if state.get("failures") and state.get("replans", 0) < runtime.context.policy.max_replans:
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
