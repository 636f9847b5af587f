"""The results of a run: a SubtaskResult per subtask, the ExecOutcome of an execute pass, and the RunResult that
``pipeline.run(task)`` returns (the answer, the executed plan, per-subtask results, a report)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from mdap.planners import Plan, Task
from mdap.report import ModuleStats, RunReport

__all__ = ["ExecOutcome", "RunResult", "Status", "SubtaskResult", "add_spent", "build_report"]


@dataclass(slots=True)
class SubtaskResult:
    """The outcome of one subtask (JSON-able with :meth:`to_record`).

    Attributes:
        status: ``"ok"`` or ``"failed"``.
        answer: the voted answer (ok), or None.
        error: why it failed (failed), or None.
        cached: the result came from the store (a resumed or replanned run), not a worker call.
        children: ids of the sub-plan when the subtask was split (recursive planning).
    """

    id: str
    role: str
    status: str
    answer: str | None = None
    error: str | None = None
    attempts: int = 0
    votes: int = 0
    samples: int = 0
    red_flags: dict[str, int] = field(default_factory=dict)
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cost: float = 0.0
    model_seconds: float = 0.0
    tool_calls: int = 0
    seconds: float = 0.0
    cached: bool = False
    children: list[str] | None = None

    @property
    def ok(self) -> bool:
        """Whether the subtask succeeded."""
        return self.status == "ok"

    def to_record(self) -> dict[str, Any]:
        """A JSON-able dict (written out by hand: ``dataclasses.asdict`` costs 30 us per call)."""
        return {
            "id": self.id,
            "role": self.role,
            "status": self.status,
            "answer": self.answer,
            "error": self.error,
            "attempts": self.attempts,
            "votes": self.votes,
            "samples": self.samples,
            "red_flags": dict(self.red_flags),
            "completion_tokens": self.completion_tokens,
            "prompt_tokens": self.prompt_tokens,
            "cost": self.cost,
            "model_seconds": self.model_seconds,
            "tool_calls": self.tool_calls,
            "seconds": self.seconds,
            "cached": self.cached,
            "children": list(self.children) if self.children is not None else None,
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> SubtaskResult:
        """The inverse of :meth:`to_record`."""
        return cls(**data)


@dataclass
class ExecOutcome:
    """What one execute pass did.

    Attributes:
        results: every subtask that finished (nested ones too), by id.
        failed: ids that failed for good, in the order they failed.
        not_run: ids never started because the pass stopped at a failure.
    """

    results: dict[str, SubtaskResult]
    failed: list[str]
    not_run: list[str]


Status = Literal["ok", "partial", "failed", "rejected", "awaiting_approval"]


class RunResult(BaseModel):
    """The outcome of one pipeline run.

    ``status``: ``ok`` (every subtask succeeded), ``partial`` (some failed, but the answer's subtasks
    succeeded with the failures as context), ``failed`` (no answer: see ``error``), ``rejected`` (the plan was
    not approved), ``awaiting_approval`` (a human must approve the plan: run again with ``resume=True,
    approve=...``).
    """

    status: Status
    answer: str | None = Field(description="the results of the plan's sinks (one, or '[id] answer' lines)")
    task: Task
    plan: Plan | None = Field(description="the executed plan (the last one, after any replans)")
    results: dict[str, SubtaskResult] = Field(default_factory=dict, description="per subtask, nested ones too")
    failed: list[str] = Field(default_factory=list, description="subtasks that failed in the last execute pass")
    replans: int = 0
    thread_id: str
    error: str | None = None
    report: RunReport

    @property
    def ok(self) -> bool:
        """Whether every subtask succeeded."""
        return self.status == "ok"


def add_spent(spent: Mapping[str, Mapping[str, Any]], results: Iterable[SubtaskResult]) -> dict[str, dict[str, Any]]:
    """``spent`` (role -> ModuleStats as a dict) plus the work of ``results`` that ran in this session."""
    modules = {role: ModuleStats.model_validate(m).model_dump() for role, m in spent.items()}
    for r in results:
        if r.children is not None or r.cached:
            continue  # a split subtask's work is in its children's; cached results cost nothing this session
        m = modules.get(r.role)
        if m is None:
            m = modules[r.role] = ModuleStats().model_dump()
        m["steps"] += 1
        m["samples"] += r.samples
        m["completion_tokens"] += r.completion_tokens
        m["prompt_tokens"] += r.prompt_tokens
        m["cost"] += r.cost
        m["model_seconds"] += r.model_seconds
        if r.red_flags:
            flags = m["red_flags"]
            for kind, c in r.red_flags.items():
                flags[kind] = flags.get(kind, 0) + c
    return modules


def build_report(
    name: str,
    results: Mapping[str, SubtaskResult],
    *,
    spent: Mapping[str, Mapping[str, Any]],
    not_run: int,
    wall_seconds: float,
    planner: ModuleStats | None,
    error: str | None,
    resumed: bool,
) -> RunReport:
    """Totals and per-module stats of a run: the planner, and each role over every execute pass (``spent``)."""
    modules: dict[str, ModuleStats] = {}
    if planner is not None:
        modules["planner"] = planner
    for role, stats in spent.items():
        modules[role] = ModuleStats.model_validate(stats)
    red: dict[str, int] = {}
    for m in modules.values():
        for kind, c in m.red_flags.items():
            red[kind] = red.get(kind, 0) + c
    done = sum(1 for r in results.values() if r.ok)
    failed = sum(1 for r in results.values() if not r.ok)
    total: dict[str, Any] = {
        "samples": sum(m.samples for m in modules.values()),
        "completion_tokens": sum(m.completion_tokens for m in modules.values()),
        "prompt_tokens": sum(m.prompt_tokens for m in modules.values()),
        "cost": sum(m.cost for m in modules.values()),
        "model_seconds": sum(m.model_seconds for m in modules.values()),
    }
    return RunReport(
        task=f"pipeline:{name}",
        total_steps=len(results) + not_run,
        steps=done,
        completed=failed == 0 and not_run == 0,
        errors=failed,
        samples=total["samples"],
        red_flags=red,
        completion_tokens=total["completion_tokens"],
        prompt_tokens=total["prompt_tokens"],
        wall_seconds=wall_seconds,
        cost=total["cost"],
        model_seconds=total["model_seconds"],
        modules=modules,
        failure=error,
        resumed_from=sum(1 for r in results.values() if r.cached) if resumed else None,
    )
