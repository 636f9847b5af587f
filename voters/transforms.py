"""Decorrelated sampling: spread a step's samples over answer-preserving views of its prompt (and adapters).

A model's wrong answers often depend on the surface form of the prompt, so wrong samples drawn from one prompt
tend to agree -- and agreeing wrong samples are what beats a vote. A microstep may declare *transforms*: a
view renders the prompt differently (e.g. Hanoi with its pegs relabelled) and maps the answer it gets back
into the original frame. Spreading samples over views (and over several adapters of one role) makes errors
that depend on the surface form stop agreeing, while right answers still agree after mapping back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mdap.errors import ConfigError
from mdap.models import ChatModel, Sample
from mdap.types import Message

__all__ = ["IDENTITY", "AnswerTransform", "Identity", "Spread", "spread_plan"]

A = TypeVar("A")


class AnswerTransform(Protocol):
    """An answer-preserving view of a prompt.

    ``back(parse(model(view(messages))))`` must equal ``parse(model(messages))`` for a model that is right on
    both; ``name`` identifies the view (it keys the ballot's parse cache, so two views never share a parse).
    """

    name: str

    def view(self, messages: Sequence[Message]) -> list[Message]:
        """The prompt as this view shows it."""
        ...

    def back(self, answer: Any) -> Any:
        """An answer to the viewed prompt, mapped back to the original prompt's frame."""
        ...


class Identity:
    """The view that changes nothing."""

    name = "identity"

    def view(self, messages: Sequence[Message]) -> list[Message]:
        """The prompt unchanged."""
        return list(messages)

    def back(self, answer: Any) -> Any:
        """The answer unchanged."""
        return answer


IDENTITY = Identity()


@dataclass(frozen=True, slots=True)
class Spread:
    """Where samples of a step come from: views of the prompt crossed with adapters, drawn round-robin.

    Args:
        views: answer-preserving transforms (include :data:`IDENTITY` to keep the original prompt).
        adapters: adapters of one role to draw from (None in the tuple = the base model); empty = the voter's.

    Raises:
        ConfigError: no view, or two views with one name.
    """

    views: tuple[AnswerTransform, ...] = (IDENTITY,)
    adapters: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        if not self.views:
            raise ConfigError("a Spread needs at least one view (IDENTITY keeps the original prompt)")
        names = [v.name for v in self.views]
        if len(set(names)) != len(names):
            raise ConfigError(f"view names must be unique, got {names}")

    def sources(self, default_adapter: str | None) -> list[tuple[int, str | None]]:
        """The (view index, adapter) pairs samples cycle through."""
        adapters = self.adapters or (default_adapter,)
        return [(v, a) for v in range(len(self.views)) for a in adapters]

    async def draw(
        self,
        model: ChatModel,
        messages: Sequence[Message],
        n: int,
        start: int,
        *,
        temperature: float,
        max_tokens: int | None,
        default_adapter: str | None,
        parse: Callable[[str], A],
    ) -> list[tuple[Sample, Callable[[str], A], int]]:
        """Draw samples ``start .. start+n-1`` of a step, each from its source in round-robin order.

        Returns (sample, parser that maps the answer back, view index) triples; one request per source.
        """
        counts = spread_plan(len(self.sources(default_adapter)), n, start)
        sources = self.sources(default_adapter)
        jobs = []
        for index, count in counts.items():
            view, adapter = sources[index]
            prompt = self.views[view].view(messages)
            jobs.append(model.sample(prompt, n=count, temperature=temperature, max_tokens=max_tokens, adapter=adapter))
        drawn = await asyncio.gather(*jobs)
        out: list[tuple[Sample, Callable[[str], A], int]] = []
        for index, samples in zip(counts, drawn, strict=True):
            view = sources[index][0]
            back = self.views[view].back

            def mapped(text: str, _back: Callable[[Any], Any] = back) -> A:
                return _back(parse(text))  # type: ignore[no-any-return]

            out.extend((s, mapped, view) for s in samples)
        return out


def spread_plan(sources: int, n: int, start: int) -> dict[int, int]:
    """How many of samples ``start .. start+n-1`` go to each source under round-robin (source -> count)."""
    if sources < 1 or n < 0 or start < 0:
        raise ConfigError(f"bad spread: sources={sources}, n={n}, start={start}")
    counts: dict[int, int] = {}
    for i in range(start, start + n):
        counts[i % sources] = counts.get(i % sources, 0) + 1
    return counts
