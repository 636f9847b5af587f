"""The Microstep (what a microagent executes) and the Chain of them that the executor runs.

A microstep is one kind of small step. Subclass :class:`Microstep` and write three methods and a name::

    class Count(Microstep[int, int]):
        fingerprint = "count:10"  # the task (kind and size): a checkpoint never resumes into another task

        def render(self, state: int) -> list[Message]:  # the minimal-context prompt for this state
            return [{"role": "user", "content": f"What comes after {state}? Reply with the number only."}]

        def parse(self, text: str) -> int:  # strict: a hashable, canonical answer, or RedFlag
            if not text.strip().isdigit():
                raise RedFlag("parse", "not a number")
            return int(text)

        def apply(self, state: int, answer: int) -> int:  # the state after the decided answer
            return answer

    report = await Executor(model, FirstToAheadByK(k=3)).run(Chain(Count(), initial=0, steps=10))

The other four members have defaults for states and answers that are JSON values already; override them in
pairs when yours are not (tuples, named tuples, dataclasses), as :class:`~mdap.evals.hanoi.HanoiStep` does:

* ``dump_state`` / ``load_state``: the state in a checkpoint (only with a checkpoint file);
* ``dump_answer`` / ``load_answer``: an answer in the trace and on a pool's wire (``load_answer`` raises
  :class:`~mdap.errors.ConfigError` on malformed data).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from mdap.types import Message

__all__ = ["Chain", "Microstep", "Verifier"]

S = TypeVar("S")
A = TypeVar("A")


class Microstep(ABC, Generic[S, A]):
    """One kind of small step: render a prompt from a state, parse a sample, apply the answer (see the module).

    Attributes:
        fingerprint: identifies the task (kind and size), so a checkpoint is never resumed into another task.
    """

    fingerprint: str

    @abstractmethod
    def render(self, state: S) -> list[Message]:
        """The minimal-context prompt for this state."""

    @abstractmethod
    def parse(self, text: str) -> A:
        """Parse a sample strictly into a hashable canonical answer; raise RedFlag on anything off."""

    @abstractmethod
    def apply(self, state: S, answer: A) -> S:
        """The state after the decided answer."""

    def dump_state(self, state: S) -> Any:
        """A JSON-able form of the state (for checkpoints); by default the state itself."""
        return state

    def load_state(self, data: Any) -> S:
        """The inverse of :meth:`dump_state`; by default the data itself."""
        return cast(S, data)

    def dump_answer(self, answer: A) -> Any:
        """A JSON-able form of an answer (for the trace and the pool's wire); by default the answer itself."""
        return answer

    def load_answer(self, data: Any) -> A:
        """The inverse of :meth:`dump_answer`; by default the data itself."""
        return cast(A, data)


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
