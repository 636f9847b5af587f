"""Scripted models for pipeline tests: answers chosen by prompt, with call counting and overlap tracking."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence

from mdap.models import Sample, SimulatedModel
from mdap.types import Message

INSTRUCTION = re.compile(r"^Instruction: (.*)$", re.MULTILINE)


def instruction(messages: Sequence[Message]) -> str:
    """The worker instruction in a prompt ('' for a planner prompt)."""
    m = INSTRUCTION.search(messages[-1]["content"]) or INSTRUCTION.search(messages[1]["content"])
    return m.group(1) if m else ""


def answer(text: str) -> str:
    """A worker reply with a final answer."""
    return json.dumps({"answer": text})


def plan_json(*subtasks: tuple[str, str, str, list[str]]) -> str:
    """A planner reply: (id, instruction, role, depends_on) per subtask."""
    return json.dumps(
        {"subtasks": [{"id": i, "instruction": t, "role": r, "depends_on": d} for i, t, r, d in subtasks]}
    )


class Tracking:
    """A ChatModel wrapper that counts calls and the most calls in flight at once."""

    def __init__(self, oracle: Callable[[Sequence[Message]], str], *, latency_s: float = 0.0) -> None:
        self.inner = SimulatedModel(oracle, latency_s=0.0)
        self.latency_s = latency_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0

    async def sample(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        adapter: str | None = None,
    ) -> list[Sample]:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            return await self.inner.sample(
                messages, n=n, temperature=temperature, max_tokens=max_tokens, adapter=adapter
            )
        finally:
            self.in_flight -= 1
