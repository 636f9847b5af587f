"""The results of a run: a SubtaskResult per subtask, the ExecOutcome of an execute pass, and the RunResult that
``pipeline.run(task)`` returns (the answer, the executed plan, per-subtask results, a report)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from mdap.planners import Plan, Task
from mdap.report import ModuleStats, RunReport
from mdap.usage import FIELDS as USAGE_FIELDS
from mdap.usage import Usage

__all__ = ["ExecOutcome", "RunResult", "Status", "SubtaskResult", "add_spent", "build_report"]


@dataclass(slots=True)
class SubtaskResult:
    """The outcome of one subtask (JSON-able with :meth:`to_record`).

    Attributes:
        status: ``"ok"`` or ``"failed"``.
        answer: the voted answer (ok), or None.
        error: why it failed (failed), or None.
        usage: what its attempts cost (samples and red flags of failed votes included).
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
    usage: Usage = field(default_factory=Usage.zero)
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
            **self.usage.to_json(),
            "tool_calls": self.tool_calls,
            "seconds": self.seconds,
            "cached": self.cached,
            "children": list(self.children) if self.children is not None else None,
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> SubtaskResult:
        """The inverse of :meth:`to_record`."""
        rest = {k: v for k, v in data.items() if k not in USAGE_FIELDS}
        return cls(**rest, usage=Usage.from_json(data))


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
    steps: dict[str, int] = {}
    usage: dict[str, Usage] = {}
    for role, m in spent.items():
        stats = ModuleStats.model_validate(m)
        steps[role], usage[role] = stats.steps, stats.usage
    zero = Usage.zero()
    for r in results:
        if r.children is not None or r.cached:
            continue  # a split subtask's work is in its children's; cached results cost nothing this session
        steps[r.role] = steps.get(r.role, 0) + 1
        usage[r.role] = usage.get(r.role, zero) + r.usage
    return {role: ModuleStats(steps=n, usage=usage[role]).model_dump() for role, n in steps.items()}


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
    total = Usage.zero()
    for m in modules.values():
        total += m.usage
    done = sum(1 for r in results.values() if r.ok)
    failed = sum(1 for r in results.values() if not r.ok)
    return RunReport(
        task=f"pipeline:{name}",
        total_steps=len(results) + not_run,
        steps=done,
        completed=failed == 0 and not_run == 0,
        failed_subtasks=failed,
        usage=total,
        wall_seconds=wall_seconds,
        modules=modules,
        failure=error,
        cached_subtasks=sum(1 for r in results.values() if r.cached) if resumed else None,
    )
