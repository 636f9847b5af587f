"""Workers against a hostile or forgetful Redis: replies they cannot deliver, deleted streams and consumer groups,
FLUSHALL, a restart without persistence. Real redis-server and `mdap worker` processes (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from pool_helpers import RedisServer, Workers, wait_until

from mdap import Executor, FirstToAheadByK, Sample
from mdap.evals.hanoi import hanoi_chain, register_pool_kinds, simulated_hanoi_model
from mdap.pool import (
    KindRegistry,
    PoolStatus,
    PoolWorker,
    PoolWorkerConfig,
    RedisPool,
    SimulatedSettings,
    StepHandler,
    pool_status,
)
from mdap.types import Message
from mdap.voters import VoterSpec

FAST = ["--heartbeat", "0.3", "--claim-idle", "1"]


def status(url: str) -> PoolStatus:
    return asyncio.run(pool_status(url))


def hanoi_job(step_id: str, reply_to: str) -> str:
    chain = hanoi_chain(3)
    messages = chain.microstep.render(chain.initial)
    voter = VoterSpec.of(FirstToAheadByK(k=1)).model_dump(mode="json")
    job = {"id": step_id, "kind": "hanoi", "params": {"disks": 3}, "messages": messages, "voter": voter}
    return json.dumps({**job, "reply_to": reply_to})


async def test_a_reply_to_of_the_wrong_type_is_dead_lettered_once_and_acked(redis_server: RedisServer) -> None:
    url = redis_server.url
    client = aioredis.Redis.from_url(url)
    kinds = KindRegistry()
    register_pool_kinds(kinds)
    config = PoolWorkerConfig(role="hanoi", heartbeat_s=0.1, claim_idle_s=0.3, max_attempts=2)
    worker = PoolWorker(url, StepHandler(kinds, simulated=SimulatedSettings()), config)
    task = asyncio.create_task(worker.run())
    try:
        await client.set("mdap:reply:not-a-list", "a string, not a list")
        await client.hset("mdap:reply:a-hash", mapping={"a": 1})
        await client.xadd("mdap:steps:hanoi", {"job": hanoi_job("s1", "mdap:reply:not-a-list")})
        await client.xadd("mdap:steps:hanoi", {"job": hanoi_job("s2", "mdap:reply:a-hash")})
        for _ in range(200):
            if await client.xlen("mdap:dead:hanoi") >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)  # several claim-idle periods: nothing may be reclaimed and dead-lettered again
        dead = await client.xrange("mdap:dead:hanoi")
        assert len(dead) == 2, [f[b"error"] for _, f in dead]
        errors = sorted(f[b"error"].decode() for _, f in dead)
        assert "reply_to mdap:reply:a-hash" in errors[0] and "WRONGTYPE" in errors[0]
        assert "reply_to mdap:reply:not-a-list" in errors[1]
        assert {f[b"step"] for _, f in dead} == {b"s1", b"s2"}
        assert (await client.xpending("mdap:steps:hanoi", "workers"))["pending"] == 0
        stats = await client.hgetall("mdap:stats:hanoi")
        assert int(stats[b"dead"]) == 2 and b"reclaimed" not in stats
        assert await client.get("mdap:reply:not-a-list") == b"a string, not a list", "the key is left alone"
        assert worker.failed == 2 and worker.done == 0
        # the worker still serves
        report = await Executor(None, FirstToAheadByK(k=2), pool=RedisPool(url)).run(hanoi_chain(3))
        assert report.ok and worker.done == 7
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await client.aclose()


def hanoi_worker(url: str, model: object | None = None, **cfg: object) -> PoolWorker:
    kinds = KindRegistry()
    register_pool_kinds(kinds)
    handler = StepHandler(kinds, model) if model is not None else StepHandler(kinds, simulated=SimulatedSettings())  # type: ignore[arg-type]
    return PoolWorker(url, handler, PoolWorkerConfig(role="hanoi", heartbeat_s=0.1, claim_idle_s=1.0, **cfg))  # type: ignore[arg-type]


async def test_a_step_lost_with_its_deleted_stream_is_published_again(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_server.url
    client = aioredis.Redis.from_url(url)
    pool = RedisPool(url, poll_s=0.1, lost_check_s=0.3)
    run = asyncio.create_task(Executor(None, FirstToAheadByK(k=2), pool=pool).run(hanoi_chain(3)))
    for _ in range(200):  # no worker yet: the first step waits in the stream
        if await client.xlen("mdap:steps:hanoi"):
            break
        await asyncio.sleep(0.02)
    assert await client.delete("mdap:steps:hanoi") == 1
    worker = hanoi_worker(url)
    task = asyncio.create_task(worker.run())
    try:
        report = await asyncio.wait_for(run, 20)
        assert report.ok and report.steps == 7
        assert "1 waiting step(s) vanished from mdap:steps:hanoi without a result" in caplog.text
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await client.aclose()


class SlowAfterHiccups:
    """Raises on its first ``failures`` calls, then answers after ``latency_s``."""

    def __init__(self, failures: int, latency_s: float) -> None:
        self.inner = simulated_hanoi_model()
        self.failures = failures
        self.latency_s = latency_s

    async def sample(self, messages: Sequence[Message], **kw: object) -> list[Sample]:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("model server hiccup")
        await asyncio.sleep(self.latency_s)
        return await self.inner.sample(messages, **kw)  # type: ignore[arg-type]


async def test_a_retried_step_is_not_lost(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    url = redis_server.url
    client = aioredis.Redis.from_url(url)
    worker = hanoi_worker(url, SlowAfterHiccups(1, 0.5), trim_every_s=0.1)
    task = asyncio.create_task(worker.run())
    try:
        pool = RedisPool(url, poll_s=0.1, lost_check_s=0.2)
        report = await asyncio.wait_for(Executor(None, FirstToAheadByK(k=1), pool=pool).run(hanoi_chain(1)), 20)
        assert report.ok
        stats = await client.hgetall("mdap:stats:hanoi")
        assert int(stats[b"retried"]) == 1 and int(stats[b"done"]) == 1 and b"duplicate" not in stats
        assert "vanished" not in caplog.text
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await client.aclose()


def test_workers_recreate_a_deleted_stream_and_group_and_keep_serving(
    redis_server: RedisServer, workers: Workers, tmp_path: Path
) -> None:
    url = redis_server.url
    procs = [workers.start(url, *FAST) for _ in range(2)]
    wait_until(lambda: len(status(url).workers) == 2, 20, "2 live workers")
    client = redis.Redis.from_url(url)
    time.sleep(0.5)  # the workers block in XREADGROUP
    client.delete("mdap:steps:hanoi")
    time.sleep(1.5)
    assert [p.poll() for p in procs] == [None, None], workers.output()
    client.xgroup_destroy("mdap:steps:hanoi", "workers")
    time.sleep(1.5)
    client.flushall()
    time.sleep(1.5)
    assert [p.poll() for p in procs] == [None, None], workers.output()
    report = asyncio.run(Executor(None, FirstToAheadByK(k=2), pool=RedisPool(url)).run(hanoi_chain(4)))
    assert report.ok and report.steps == 15
    assert "recreating it and serving on" in workers.output()
    assert "NOGROUP" in workers.output() or "no longer exists" in workers.output()
    assert workers.stop_all() == [0, 0]


def test_pool_status_shows_live_workers_and_their_role_after_a_restart_without_persistence(
    redis_server: RedisServer, workers: Workers
) -> None:
    url = redis_server.url
    for _ in range(3):
        workers.start(url, *FAST)
    wait_until(lambda: len(status(url).workers) == 3, 20, "3 live workers")
    client = redis.Redis.from_url(url)
    client.set("marker", "before the restart")
    redis_server.restart()
    assert client.get("marker") is None, "the restart forgot everything"

    def all_back() -> bool:
        s = status(url)
        return len(s.workers) == 3 and [(r.role, r.workers) for r in s.roles] == [("hanoi", 3)]

    wait_until(all_back, 20, "the workers to register again")
    out = subprocess.run(
        [sys.executable, "-m", "mdap.cli", "pool", "status", "--redis", url], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert "workers (3 live)" in out.stdout and "hanoi  workers=3" in out.stdout
    report = asyncio.run(Executor(None, FirstToAheadByK(k=2), pool=RedisPool(url)).run(hanoi_chain(3)))
    assert report.ok, "they serve after the restart too"
    assert workers.stop_all() == [0, 0, 0]
