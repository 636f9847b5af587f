"""Two runs at once on one compiled pipeline: each run's events, results and report are its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import Tracking, answer, instruction

from mdap.agents import Event, Pipeline
from mdap.models import Sample
from mdap.planners import Plan, StaticPlanner, Task, chain
from mdap.types import Message
from mdap.voters import FirstToAheadByK

STEPS = 6


class Overlapping(Tracking):
    """Holds each run's first model call until the other run has made one too: the runs surely overlap."""

    def __init__(self) -> None:
        super().__init__(lambda messages: answer("done: " + instruction(messages)))
        self.runs: set[str] = set()
        self.both = asyncio.Event()

    async def sample(self, messages: Sequence[Message], **kwargs: Any) -> list[Sample]:
        self.runs.add(instruction(messages).split()[0])
        if len(self.runs) == 2:
            self.both.set()
        await asyncio.wait_for(self.both.wait(), 30)
        return await super().sample(messages, **kwargs)


def _plan(task: Task) -> Plan:
    return chain([f"{task.text} part {i}" for i in range(STEPS)], role="w", prefix=task.text)


@pytest.mark.parametrize("checkpoint", [False, True], ids=["in-memory", "sqlite"])
async def test_two_runs_at_once_on_one_compiled_pipeline_keep_their_own_events(
    tmp_path: Path, checkpoint: bool
) -> None:
    heard: list[Event] = []
    model = Overlapping()
    compiled = (
        Pipeline(model=model)
        .planner(StaticPlanner(_plan))
        .role("w", voter=FirstToAheadByK(k=1, temperature=0.0, max_samples=2))
        .policy(max_concurrency=4)
        .checkpoint(tmp_path / "runs.sqlite" if checkpoint else None)
        .on("*", heard.append)
        .compile()
    )
    alpha, beta = await asyncio.gather(compiled.run("alpha", thread_id="ta"), compiled.run("beta", thread_id="tb"))

    for result, name, thread in ((alpha, "alpha", "ta"), (beta, "beta", "tb")):
        assert result.ok and result.thread_id == thread
        assert result.answer == f"done: {name} part {STEPS - 1}"
        assert sorted(result.results) == sorted(f"{name}{i}" for i in range(STEPS))
        assert result.report.modules["w"].steps == STEPS
        mine = [e for e in heard if e.thread == thread]
        ids = {e.data["id"] for e in mine if "id" in e.data}
        assert ids == {f"{name}{i}" for i in range(STEPS)}  # its own subtasks, and only those
        kinds = [e.kind for e in mine]
        assert kinds.count("vote_decided") == STEPS and kinds.count("subtask_finished") == STEPS
        assert kinds[0] == "plan_created" and kinds[-1] == "run_finished"
    assert {e.thread for e in heard} == {"ta", "tb"}
    assert model.both.is_set()  # each run's first model call waited for the other's: they ran at once
