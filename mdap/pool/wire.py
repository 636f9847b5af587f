"""What travels over Redis: key names, the step request a coordinator publishes and the result a worker writes.

Wire messages are pydantic models (validated where they enter a process). A step request carries everything a
worker needs besides its model: the step kind and parameters (to rebuild the microstep's parser from the kind
registry), the rendered prompt, the voter's configuration, and where to send the result.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from mdap.errors import ConfigError, VoteFailed
from mdap.report import UsageModel
from mdap.voters import Decision, VoterSpec

__all__ = ["GROUP", "Keys", "StepRequest", "StepResult"]

GROUP = "workers"
"""The consumer group every worker of a role reads with."""


class Keys:
    """The Redis key names of one pool (every key starts with ``prefix``)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "mdap") -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise ConfigError(f"the pool's key prefix must be a non-empty word, got {prefix!r}")
        self.prefix = prefix

    def steps(self, role: str) -> str:
        """The stream of step requests of ``role``."""
        return f"{self.prefix}:steps:{role}"

    def dead(self, role: str) -> str:
        """The dead-letter stream of ``role``: requests that could not be run, with the error."""
        return f"{self.prefix}:dead:{role}"

    def stats(self, role: str) -> str:
        """Counters of ``role`` (done, reclaimed, retried, dead, duplicate)."""
        return f"{self.prefix}:stats:{role}"

    def result(self, step_id: str) -> str:
        """The result of a step, written once (SET NX): a step run twice still has one result."""
        return f"{self.prefix}:result:{step_id}"

    def moved(self, step_id: str) -> str:
        """The stream entry id of a step's latest retry (a worker republished it after an error)."""
        return f"{self.prefix}:moved:{step_id}"

    def reply(self, client: str) -> str:
        """The list a coordinator pops its results from."""
        return f"{self.prefix}:reply:{client}"

    def worker(self, worker_id: str) -> str:
        """A worker's heartbeat hash (expires when the worker stops beating)."""
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def workers(self) -> str:
        """The set of worker ids that have announced themselves (dead ones are pruned by ``pool status``)."""
        return f"{self.prefix}:workers"

    @property
    def roles(self) -> str:
        """The set of roles that have a stream."""
        return f"{self.prefix}:roles"


class StepRequest(BaseModel):
    """One step for a worker: decide the answer of ``messages`` by voting -- or run a ``work`` item.

    Attributes:
        id: the step id, unique per run and stable across coordinator restarts (``<run>:<index>``).
        kind: the step kind in the worker's registry (e.g. ``"hanoi"``); with ``params`` it rebuilds the parser.
        params: the kind's parameters (e.g. ``{"disks": 10}``).
        messages: the rendered prompt (a microstep).
        voter: how to vote (a microstep): a :class:`~mdap.voters.VoterSpec`.
        work: a JSON-able work item the kind's ``work`` function runs instead (e.g. a pipeline subtask).
        reply_to: the list the result is pushed to.
        attempt: 1 for the first try; a step that raised is republished with attempt + 1.
    """

    model_config = {"extra": "forbid"}

    id: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    messages: list[dict[str, str]] = Field(default_factory=list)
    voter: VoterSpec | None = None
    work: dict[str, Any] | None = None
    reply_to: str = Field(min_length=1)
    attempt: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _one_job(self) -> StepRequest:
        if (self.work is None) == (self.voter is None) or (self.voter is not None and not self.messages):
            raise ValueError("a step request holds either messages and a voter, or a work item")
        return self


class StepResult(UsageModel):
    """The outcome of a step, written once per step id.

    ``status`` is ``"decided"`` (``answer`` holds the microstep's ``dump_answer`` form, or a work item's
    output), ``"vote_failed"`` (the sample cap was reached: ``tally`` and ``error`` say how) or ``"failed"``
    (the step was dead-lettered after its retries, or a work item raised: ``error`` says why).
    """

    id: str
    status: Literal["decided", "vote_failed", "failed"]
    answer: Any = None
    votes: list[int] = Field(default_factory=list)
    tally: dict[str, int] | None = None
    error: str | None = None
    worker: str = ""

    @classmethod
    def decided(cls, step_id: str, d: Decision[Any], answer: Any, worker: str) -> StepResult:
        """The result of a decided vote (``answer`` in its JSON-able form)."""
        return cls(
            id=step_id,
            status="decided",
            answer=answer,
            votes=d.votes,
            usage=d.usage,
            worker=worker,
        )

    @classmethod
    def vote_failed(cls, step_id: str, err: VoteFailed, worker: str) -> StepResult:
        """The result of a vote that reached its sample cap."""
        return cls(
            id=step_id,
            status="vote_failed",
            usage=err.usage,
            tally=err.tally,
            error=str(err),
            worker=worker,
        )
