"""The Microstep protocol (what a microagent executes) and the Chain of them that the executor runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from mdap.types import Message

__all__ = ["Chain", "Microstep", "Verifier"]

S = TypeVar("S")
A = TypeVar("A")


class Microstep(Protocol[S, A]):
    """One kind of small step: render a prompt from a state, parse a sample, apply the answer.

    Attributes:
        fingerprint: identifies the task (kind and size), so a checkpoint is never resumed into another task.
    """

    fingerprint: str

    def render(self, state: S) -> list[Message]:
        """The minimal-context prompt for this state."""
        ...

    def parse(self, text: str) -> A:
        """Parse a sample strictly into a hashable canonical answer; raise RedFlag on anything off."""
        ...

    def apply(self, state: S, answer: A) -> S:
        """The state after the decided answer."""
        ...

    def dump_state(self, state: S) -> Any:
        """A JSON-able form of the state (for checkpoints)."""
        ...

    def load_state(self, data: Any) -> S:
        """The inverse of :meth:`dump_state`."""
        ...

    def dump_answer(self, answer: A) -> Any:
        """A JSON-able form of an answer (for the trace and the pool's wire)."""
        ...

    def load_answer(self, data: Any) -> A:
        """The inverse of :meth:`dump_answer` (a worker's answer back into an answer); ConfigError if malformed."""
        ...


Verifier = Callable[[int, S, A], "str | None"]
"""Checks a decided answer independently: ``(step index, state before, answer) -> error message or None``."""


@dataclass(frozen=True)
class Chain(Generic[S, A]):
    """A sequence of ``steps`` microsteps of one kind, starting from ``initial``.

    Args:
        microstep: renders, parses and applies each step.
        initial: the state before the first step.
        steps: number of steps to decide.
        verifier: optional independent check of every decided answer (counted as errors in the report).
        kind: ``(name, params)`` of the step kind, by which pool workers rebuild the microstep from their
            registry (see :mod:`mdap.pool.kinds`); needed only to run on a remote pool.
    """

    microstep: Microstep[S, A]
    initial: S
    steps: int
    verifier: Verifier[S, A] | None = None
    kind: tuple[str, dict[str, Any]] | None = None
