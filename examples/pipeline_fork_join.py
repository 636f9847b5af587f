"""A planner -> coordinator -> worker pipeline: fan a question out to three workers, then join their answers.

    python examples/pipeline_fork_join.py                  # scripted simulated model: instant, no server
    python examples/pipeline_fork_join.py --model local    # the embedded SmolLM2-135M on a CPU vLLM server
    mdap run examples/pipeline_fork_join.py:build "Name three uses of a paperclip" --no-checkpoint

The plan is written in Python (StaticPlanner + fork_join); swap in ``LLMPlanner(model)`` to let the model plan.
Each worker's answer is voted (first-to-ahead-by-k); the join sees the three answers as compact artifacts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

from mdap import FirstToAheadByK, Pipeline, SimulatedModel, StaticPlanner
from mdap.agents import Event
from mdap.planners import Task, fork_join
from mdap.types import Message

ANGLES = ("as an office tool", "as a material", "in an emergency")


def simulated(messages: Sequence[Message]) -> str:
    """Scripted worker answers: each angle gets a use; the join lists what it was given."""
    text = messages[-1]["content"]
    if "Results of the subtasks" in text:
        found = re.findall(r"^\[part\d\] (.*)$", text, re.MULTILINE)
        return json.dumps({"answer": "; ".join(found)})
    for angle, use in zip(ANGLES, ("hold papers", "bend into a hook", "reset a router"), strict=True):
        if angle in text:
            return json.dumps({"answer": use})
    return json.dumps({"answer": "no idea"})


def plan_for(task: Task) -> Any:
    """One subtask per angle, then a join that merges them."""
    parts = [f"Name one use of a paperclip {angle}. Answer in a few words." for angle in ANGLES]
    return fork_join(parts, worker="thinker", join="Merge these answers into one line, separated by ';'.")


def build(model: Any = None) -> Pipeline:
    """The pipeline (``mdap run examples/pipeline_fork_join.py:build "task"`` calls this).

    The simulated model votes first-to-ahead-by-2 at temperature 0.7. A 135M-parameter model's free-text answers
    rarely agree twice at that temperature, so with a real model the example decides each answer greedily (k=1,
    temperature 0): voting pays off on steps whose canonical answers do agree.
    """
    if model is None:
        model = SimulatedModel(simulated)
        voter = FirstToAheadByK(k=2, temperature=0.7, max_samples=8, max_tokens=48)
    else:
        voter = FirstToAheadByK(k=1, temperature=0.0, max_samples=3, max_tokens=32)
    return (
        Pipeline("paperclips", model=model)
        .planner(StaticPlanner(plan_for))
        .role("thinker", description="answers short questions", voter=voter)
        .policy(max_concurrency=3, retries=1, backoff_s=0.1)
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("simulated", "local"), default="simulated")
    args = ap.parse_args()
    async with AsyncExitStack() as stack:
        model = None
        if args.model == "local":
            from mdap.models import LocalModel

            model = await stack.enter_async_context(LocalModel())
        pipeline = build(model).checkpoint(None)

        def show(event: Event) -> None:
            print(f"  {event.kind:<16} {event.data.get('id', '')} {event.data.get('answer', '')[:60]}")

        pipeline.on("subtask_finished", show)
        result = await pipeline.run("Name three uses of a paperclip")
    print(f"status: {result.status}; samples: {result.report.usage.samples}; wall: {result.report.wall_seconds:.2f} s")
    print(f"answer: {result.answer}")


if __name__ == "__main__":
    asyncio.run(main())
