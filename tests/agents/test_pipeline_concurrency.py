"""Two runs at once on one compiled pipeline: each run's events, results and report are its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pipeline_helpers import Tracking, answer, instruction

from mdap.agents import Event, Pipeline
from mdap.planners import Plan, StaticPlanner, Task, chain
from mdap.types import Message
from mdap.voters import FirstToAheadByK

STEPS = 6


def _plan(task: Task) -> Plan:
    return chain([f"{task.text} part {i}" for i in range(STEPS)], role="w", prefix=task.text)


def _oracle(messages: list[Message]) -> str:
    return answer("done: " + instruction(messages))


@pytest.mark.parametrize("checkpoint", [False, True], ids=["in-memory", "sqlite"])
async def test_two_runs_at_once_on_one_compiled_pipeline_keep_their_own_events(
    tmp_path: Path, checkpoint: bool
) -> None:
    heard: list[Event] = []
    compiled = (
        Pipeline(model=Tracking(_oracle, latency_s=0.002))  # a yield per sample: the two runs interleave
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
    threads_in_order = [e.thread for e in heard if e.kind == "vote_decided"]
    assert threads_in_order != sorted(threads_in_order)  # they really ran at the same time
