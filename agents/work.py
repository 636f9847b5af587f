"""What the coordinator hands a worker (WorkItem) and gets back (WorkOutput), and the SubtaskRunner seam.

Both are plain, JSON-able records (``to_dict``/``from_dict``), so the step that turns one into the other can run
in this process (the default: :class:`LocalRunner`) or on a worker pool in other processes: a pool is any
async callable ``(WorkItem, RunScope) -> WorkOutput`` (see :class:`SubtaskRunner`). The :class:`RunScope` is the
run's own context (its id, thread and events), passed with each item, never kept in the shared runner or workers,
so concurrent runs of one compiled pipeline do not see each other's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from mdap.errors import ConfigError
from mdap.usage import FIELDS as USAGE_FIELDS
from mdap.usage import Usage

from .events import EventBus

__all__ = ["Artifact", "LocalRunner", "RunScope", "SubtaskRunner", "WorkItem", "WorkOutput"]


@dataclass(slots=True)
class Artifact:
    """The compact result of a dependency, as a dependent sees it (never the dependency's transcript).

    Attributes:
        id: the dependency's subtask id.
        ok: whether it succeeded.
        text: its answer (or its error, when it failed), cut to the coordinator's ``artifact_chars``.
    """

    id: str
    ok: bool
    text: str


@dataclass(slots=True)
class WorkItem:
    """One subtask to execute.

    Attributes:
        id: the subtask id (nested subtasks: ``parent/child``).
        role: the worker role's name.
        instruction: what to do.
        artifacts: results of the subtasks it depends on.
        may_split: the worker may answer "too big" (the planner can plan it again).
        attempt: 1 for the first try.
    """

    id: str
    role: str
    instruction: str
    artifacts: list[Artifact] = field(default_factory=list)
    may_split: bool = False
    attempt: int = 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (for pools that send work to other processes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkItem:
        """The inverse of :meth:`to_dict`."""
        arts = [Artifact(**a) for a in data.get("artifacts", [])]
        return cls(**{**data, "artifacts": arts})


@dataclass(slots=True)
class WorkOutput:
    """What a worker returns for one subtask.

    Attributes:
        answer: the voted final answer, or None when the worker found the subtask too big.
        too_big: why the worker wants the subtask split (only when ``may_split``).
        votes: decided votes (one per tool round and one for the answer).
        tool_calls: tool calls made.
        usage: what the votes cost (samples, red flags, tokens), and the model requests (cost, latency).
    """

    answer: str | None
    too_big: str | None = None
    votes: int = 0
    tool_calls: int = 0
    usage: Usage = field(default_factory=Usage.zero)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (the usage's counters as top-level keys)."""
        return {
            "answer": self.answer,
            "too_big": self.too_big,
            "votes": self.votes,
            "tool_calls": self.tool_calls,
            **self.usage.to_json(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkOutput:
        """The inverse of :meth:`to_dict`."""
        rest = {k: v for k, v in data.items() if k not in USAGE_FIELDS}
        return cls(**rest, usage=Usage.from_json(data))


@dataclass(slots=True, frozen=True)
class RunScope:
    """One run's own context, handed down with each work item (made per ``run()``, never stored in shared objects).

    Attributes:
        run_id: unique per ``run()`` call (a pool names its work by it, so two runs never share a result).
        thread: the run's thread id (its checkpoint key).
        events: the run's event bus: the pipeline's listeners and this run's trace.
    """

    run_id: str = ""
    thread: str = ""
    events: EventBus = field(default_factory=EventBus)


class SubtaskRunner(Protocol):
    """Executes one work item somewhere: in process (:class:`LocalRunner`) or on a pool.

    Raise an :class:`~mdap.errors.MdapError` (``VoteFailed``, ``ModelError``, ``PoolError``, ``SubtaskFailed``)
    for a failed attempt: the coordinator retries it with backoff, then replans or applies its failure policy.
    """

    async def __call__(self, item: WorkItem, scope: RunScope) -> WorkOutput:
        """Run ``item`` for the run ``scope`` and return its output."""
        ...


class _RunsItems(Protocol):
    """What a LocalRunner runs items on: a :class:`~mdap.agents.worker.Worker` (named by shape, so this module
    stays below the worker's)."""

    async def run(self, item: WorkItem, events: EventBus | None = None) -> WorkOutput: ...


class LocalRunner:
    """Runs each work item on its role's worker in this process (the default subtask runner)."""

    def __init__(self, workers: Mapping[str, _RunsItems]) -> None:
        self.workers = dict(workers)

    async def __call__(self, item: WorkItem, scope: RunScope) -> WorkOutput:
        """Run ``item`` on the worker of its role, its events going to the run's bus.

        Raises:
            ConfigError: no worker for the item's role.
        """
        worker = self.workers.get(item.role)
        if worker is None:
            raise ConfigError(f"no worker for role {item.role!r}; known roles: {', '.join(sorted(self.workers))}")
        return await worker.run(item, scope.events)
