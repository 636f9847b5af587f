"""Pipelines on the Redis pool: the coordinator sends each subtask to the workers of its role."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence

from pool_helpers import RedisServer

from mdap.agents import Pipeline
from mdap.agents.pool_runner import pool_runner, register_pipeline_kind
from mdap.models import SimulatedModel
from mdap.planners import StaticPlanner, fork_join
from mdap.pool import KindRegistry, PoolWorker, PoolWorkerConfig, RedisPool, SimulatedSettings, StepHandler, read_status
from mdap.types import Message
from mdap.voters import FirstToAheadByK

VOTER = FirstToAheadByK(k=2, temperature=0.0, max_samples=6)
_INSTRUCTION = re.compile(r"^Instruction: (.*)$", re.MULTILINE)


def echo(messages: Sequence[Message]) -> str:
    m = _INSTRUCTION.search(messages[-1]["content"])
    return json.dumps({"answer": "did " + (m.group(1) if m else "?")})


def pipeline(model: SimulatedModel) -> Pipeline:
    plan = fork_join([f"part {i}" for i in range(6)], worker="w", join="merge")
    return Pipeline("pooled", model=model).planner(StaticPlanner(plan)).role("w", voter=VOTER).checkpoint(None)


async def test_a_pipeline_runs_its_subtasks_on_pool_workers(redis_server: RedisServer) -> None:
    url = redis_server.url
    worker_model = SimulatedModel(echo)
    kinds = KindRegistry()
    register_pipeline_kind(pipeline(worker_model), registry=kinds)
    worker = PoolWorker(
        url, StepHandler(kinds, simulated=SimulatedSettings()), PoolWorkerConfig(role="w", concurrency=3)
    )
    serving = asyncio.create_task(worker.run())
    coordinator_model = SimulatedModel(echo)
    try:
        async with RedisPool(url) as pool:
            result = await pipeline(coordinator_model).runner(pool_runner(pool)).run("fan out")
            status = await read_status(pool._redis)  # type: ignore[arg-type]
    finally:
        worker.stop()
        await asyncio.wait_for(serving, 10)
    assert result.ok and result.answer == "did merge"
    assert coordinator_model.calls == 0, "the subtasks ran on the worker's model, not the coordinator's"
    assert worker_model.calls == 7  # one request (n=k) per subtask vote
    assert status.roles[0].role == "w" and status.roles[0].done == 7


async def test_a_subtask_without_a_serving_kind_fails_its_attempt_clearly(redis_server: RedisServer) -> None:
    url = redis_server.url
    worker = PoolWorker(url, StepHandler(KindRegistry(), simulated=SimulatedSettings()), PoolWorkerConfig(role="w"))
    serving = asyncio.create_task(worker.run())
    try:
        async with RedisPool(url) as pool:
            run = pipeline(SimulatedModel(echo)).runner(pool_runner(pool)).policy(retries=0, max_replans=0)
            result = await run.run("fan out")
    finally:
        worker.stop()
        await asyncio.wait_for(serving, 10)
    assert not result.ok
    assert "unknown step kind 'pipeline'" in json.dumps(result.model_dump(mode="json"), default=str)
