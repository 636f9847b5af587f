"""What an execute pass produces: a SubtaskResult per subtask (JSON-able records) and the ExecOutcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ExecOutcome", "SubtaskResult"]


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
