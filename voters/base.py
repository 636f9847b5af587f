"""What every voter shares: the Decision it returns, the Voter protocol, and the per-step ballot box."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from mdap.errors import RedFlag, VoteFailed
from mdap.models import ChatModel, Sample
from mdap.types import Message
from mdap.usage import Usage

from .observe import SampleRecord, VoteRecord, current_observer
from .redflags import PARSE, RedFlagPolicy

__all__ = ["Ballot", "Decision", "Parser", "Voter"]

A = TypeVar("A")

Parser = Callable[[str], A]
"""Turns a sample's text into an answer, raising :class:`~mdap.errors.RedFlag` on anything suspicious.

The answer must be hashable: equal answers are the same vote (parse to a canonical form)."""


@dataclass(slots=True)
class Decision(Generic[A]):
    """The outcome of one vote.

    Attributes:
        answer: the decided (parsed, canonical) answer.
        votes: votes per distinct answer, the decided answer first.
        usage: what the step's samples cost: samples drawn (red-flagged ones included), red flags by kind,
            completion tokens over all samples, prompt tokens when the backend reports them.
    """

    answer: A
    votes: list[int]
    usage: Usage = field(default_factory=Usage.zero)


class Voter(Protocol):
    """Decides one step from samples of a model."""

    async def decide(self, model: ChatModel, messages: Sequence[Message], parse: Parser[A]) -> Decision[A]:
        """Draw samples of ``messages`` and return the decided answer, or raise VoteFailed."""
        ...


class Ballot(Generic[A]):
    """The votes of one step: red-flags, parses (cached by text) and tallies samples.

    Identical texts parse identically, so each distinct text is parsed once per step. Under a vote observer
    (:mod:`mdap.voters.observe`) it also records every sample and reports the vote when it decides or fails.

    Args:
        k: the voter's margin, for the observer's record.
    """

    __slots__ = (
        "_flag",
        "_parsed",
        "_record",
        "answers",
        "completion_tokens",
        "cost",
        "flags",
        "order",
        "prompt_tokens",
        "samples",
        "tally",
    )

    def __init__(self, k: int | None = None) -> None:
        self.tally: dict[Hashable, int] = {}
        self.order: list[Hashable] = []
        self.flags: dict[str, int] = {}
        self.samples = 0
        self.completion_tokens = 0
        self.prompt_tokens = 0
        self.cost: float | None = None  # None until a sample with a price set is cast
        self._parsed: dict[Hashable, A | _Flagged] = {}
        self._record = VoteRecord(k=k) if current_observer() is not None else None
        self._flag: str | None = None

    def cast(self, sample: Sample, parse: Parser[A], policy: RedFlagPolicy, view: int = 0) -> A | None:
        """Count one sample; return its answer, or None if it was red-flagged.

        ``view`` numbers the prompt view the sample answered (see :mod:`mdap.voters.transforms`): one text
        parses to different answers under different views, so the parse cache is per view.
        """
        record = self._record
        if record is None:
            return self._cast(sample, parse, policy, view)
        self._flag = None
        answer = self._cast(sample, parse, policy, view)
        record.samples.append(SampleRecord(sample, answer, self._flag))
        return answer

    def _cast(self, sample: Sample, parse: Parser[A], policy: RedFlagPolicy, view: int) -> A | None:
        self.samples += 1
        self.completion_tokens += sample.completion_tokens
        if sample.cost is not None:
            self.cost = sample.cost if self.cost is None else self.cost + sample.cost
        flag = policy.check(sample)
        if flag is None:
            text = sample.text
            key: Hashable = (view, text) if view else text
            cached = self._parsed.get(key, self)
            if cached is self:
                try:
                    answer = parse(text)
                except RedFlag as err:
                    flag = err.kind or PARSE
                    self._parsed[key] = _Flagged(flag)
                else:
                    self._parsed[key] = answer
                    return self._vote(answer)
            elif isinstance(cached, _Flagged):
                flag = cached.kind
            else:
                return self._vote(cached)  # type: ignore[arg-type]
        self.flags[flag] = self.flags.get(flag, 0) + 1
        self._flag = flag
        return None

    def _vote(self, answer: A) -> A:
        count = self.tally.get(answer)
        if count is None:
            self.order.append(answer)
            self.tally[answer] = 1
        else:
            self.tally[answer] = count + 1
        return answer

    def leader(self) -> tuple[Hashable | None, int]:
        """The answer with most votes (earliest on ties) and its lead over the runner-up."""
        best: Hashable | None = None
        top = second = 0
        for answer in self.order:
            c = self.tally[answer]
            if c > top:
                best, second, top = answer, top, c
            elif c > second:
                second = c
        return best, top - second

    def decision(self, answer: A) -> Decision[A]:
        """The Decision for ``answer`` with this ballot's counts (decided answer's votes first)."""
        votes = sorted((c for a, c in self.tally.items() if a != answer), reverse=True)
        votes.insert(0, self.tally[answer])
        if self._record is not None:
            self._report(answer, votes, None)
        usage = Usage(self.samples, self.flags, self.completion_tokens, self.prompt_tokens, self.cost)
        return Decision(answer, votes, usage)

    def failure(self, message: str) -> VoteFailed:
        """A VoteFailed carrying this ballot's tally and red flags."""
        tally = {repr(a): c for a, c in sorted(self.tally.items(), key=lambda kv: -kv[1])}
        if self._record is not None:
            self._report(None, sorted(self.tally.values(), reverse=True), message)
        return VoteFailed(message, tally=tally, red_flags=self.flags, samples=self.samples)

    def _report(self, answer: Hashable | None, votes: list[int], failed: str | None) -> None:
        """Tell the observer of this context about the vote (once)."""
        record, observer = self._record, current_observer()
        self._record = None
        if record is None or observer is None:
            return
        record.answer, record.votes, record.red_flags, record.failed = answer, votes, dict(self.flags), failed
        record.end_ns = time.time_ns()
        observer.vote(record)


class _Flagged:
    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind
