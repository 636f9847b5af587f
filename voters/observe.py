"""An optional observer of votes: every sample a ballot counted, for tracing (no tracing library here).

A tracer (``mdap.agents.telemetry``) sets an observer for the code it watches with :func:`observing`; each
ballot made under it reports one :class:`VoteRecord` when it decides or fails. Nobody observing costs one
context-variable lookup per vote.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from mdap.models import Sample

__all__ = ["SampleRecord", "VoteObserver", "VoteRecord", "current_observer", "observing", "set_observer"]


@dataclass(slots=True)
class SampleRecord:
    """One counted sample: the model's sample, and its answer or the red flag that discarded it."""

    sample: Sample
    answer: Hashable | None = None
    flag: str | None = None


@dataclass(slots=True)
class VoteRecord:
    """One vote, as a ballot saw it.

    Attributes:
        samples: every sample drawn, in order (red-flagged ones included).
        k: the voter's margin (None for voters without one).
        answer: the decided answer (None when the vote failed).
        votes: votes per distinct answer, the decided answer first.
        red_flags: red flags by kind.
        failed: why the vote failed, or None.
        start_ns: ``time.time_ns()`` when the ballot opened; ``end_ns`` when it closed.
    """

    samples: list[SampleRecord] = field(default_factory=list)
    k: int | None = None
    answer: Hashable | None = None
    votes: list[int] = field(default_factory=list)
    red_flags: dict[str, int] = field(default_factory=dict)
    failed: str | None = None
    start_ns: int = field(default_factory=time.time_ns)
    end_ns: int = 0


class VoteObserver(Protocol):
    """Hears every vote decided (or failed) under it; must be quick (it is called in the event loop)."""

    def vote(self, record: VoteRecord) -> None:
        """One finished vote."""
        ...


_OBSERVER: ContextVar[VoteObserver | None] = ContextVar("mdap_vote_observer", default=None)


def current_observer() -> VoteObserver | None:
    """The observer of the current context, or None."""
    return _OBSERVER.get()


@contextmanager
def observing(observer: VoteObserver | None) -> Iterator[None]:
    """Report every vote of this context (and of tasks started in it) to ``observer`` while inside."""
    token = _OBSERVER.set(observer)
    try:
        yield
    finally:
        _OBSERVER.reset(token)


def set_observer(observer: VoteObserver | None) -> None:
    """Set the observer of the current context until it is set again (for callbacks that cannot nest a
    ``with``: an event listener that opens a subtask's span for the rest of the subtask's task)."""
    _OBSERVER.set(observer)
