"""pipeline.stream(task): the run's events as an async iterator, then its result."""

from __future__ import annotations

import json

import pytest

from mdap.agents import Pipeline
from mdap.errors import ConfigError, PlanError
from mdap.models import ScriptedModel
from mdap.planners import LLMPlanner, StaticPlanner, chain
from mdap.voters import FirstToAheadByK

VOTER = FirstToAheadByK(k=1, temperature=0.0, max_samples=3)


def _pipeline(model: ScriptedModel) -> Pipeline:
    plan = StaticPlanner(chain(["first", "second"], role="w"))
    return Pipeline("streamed", model=model).planner(plan).role("w", voter=VOTER).checkpoint(None)


async def test_stream_yields_the_runs_events_in_order_then_holds_the_result() -> None:
    model = ScriptedModel([json.dumps({"answer": "a"}), json.dumps({"answer": "b"})])
    stream = _pipeline(model).stream("two steps")
    with pytest.raises(ConfigError, match="not finished"):
        _ = stream.result
    kinds = [event.kind async for event in stream]

    assert kinds[0] == "plan_created" and kinds[-1] == "run_finished"
    assert kinds.count("subtask_started") == kinds.count("subtask_finished") == 2
    assert kinds.index("vote_decided") < kinds.index("subtask_finished")
    assert stream.result.ok and stream.result.answer == "b"


async def test_a_pipeline_listener_and_a_stream_both_hear_the_run() -> None:
    heard: list[str] = []
    model = ScriptedModel([json.dumps({"answer": "a"}), json.dumps({"answer": "b"})])
    compiled = _pipeline(model).on("run_finished", lambda e: heard.append(e.kind)).compile()
    events = [e async for e in compiled.stream("two steps", thread_id="s1")]
    assert heard == ["run_finished"]
    assert {e.thread for e in events} == {"s1"}


async def test_a_run_that_raises_raises_from_the_stream() -> None:
    model = ScriptedModel(["no plan here"] * 10)
    pipeline = Pipeline("bad", model=model).planner(LLMPlanner(model, max_attempts=1)).role("w").checkpoint(None)
    with pytest.raises(PlanError):
        async for _ in pipeline.stream("anything"):
            pass
