"""The pool's parts in one process against a real redis-server: dead letters, retries, wire, local pool."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pool_helpers import RedisServer

from mdap import ConfigError, Executor, FirstToAheadByK, Majority, PoolError, RedFlagPolicy, Sample
from mdap.evals.hanoi import HanoiStep, hanoi_chain, register_pool_kinds, simulated_hanoi_model
from mdap.microstep import Chain
from mdap.pool import (
    KindRegistry,
    LocalPool,
    PoolWorker,
    PoolWorkerConfig,
    RedisPool,
    SimulatedSettings,
    StepHandler,
    read_status,
)
from mdap.pool._redis import redact, stop_tasks
from mdap.types import Message
from mdap.voters import VoterSpec


def registry() -> KindRegistry:
    kinds = KindRegistry()
    register_pool_kinds(kinds)
    return kinds


@asynccontextmanager
async def running_worker(url: str, handler: StepHandler | None = None, **cfg: object) -> AsyncIterator[PoolWorker]:
    worker = PoolWorker(url, handler or StepHandler(registry(), simulated=SimulatedSettings(error_rate=0.01)),
                        PoolWorkerConfig(role="hanoi", heartbeat_s=0.2, claim_idle_s=1.0, **cfg))  # type: ignore[arg-type]  # fmt: skip
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def test_malformed_messages_go_to_the_dead_letter_stream_and_the_worker_keeps_going(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url
    client = aioredis.Redis.from_url(url)
    async with running_worker(url):
        await client.xadd("mdap:steps:hanoi", {"job": "{not json"})
        await client.xadd("mdap:steps:hanoi", {"payload": "no job field"})
        await client.xadd("mdap:steps:hanoi", {"job": json.dumps({"id": "x", "kind": "hanoi"})})
        report = await Executor(None, FirstToAheadByK(k=2), pool=RedisPool(url)).run(hanoi_chain(5))
        assert report.ok and report.steps == 31
        dead = await client.xrange("mdap:dead:hanoi")
        assert len(dead) == 3
        errors = [fields[b"error"].decode() for _, fields in dead]
        assert all(e.startswith("malformed step request") for e in errors)
        assert "no 'job' field" in errors[1]
        assert "reply_to: Field required" in errors[2]
        assert dead[0][1][b"job"] == b"{not json"
        status = await read_status(client)
        assert status.roles[0].dead_letter == 3 and status.roles[0].pending == 0 and status.roles[0].done == 31
    await client.aclose()


async def test_an_unknown_kind_is_dead_lettered_and_fails_the_run_clearly(redis_server: RedisServer) -> None:
    empty = StepHandler(KindRegistry(), simulated=SimulatedSettings())
    async with running_worker(redis_server.url, empty):
        with pytest.raises(PoolError, match=r"unknown step kind 'hanoi' \(this worker knows: none\)"):
            await Executor(None, FirstToAheadByK(k=2), pool=RedisPool(redis_server.url)).run(hanoi_chain(3))


class Flaky:
    """A model that raises on its first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        self.inner = simulated_hanoi_model()
        self.failures = failures

    async def sample(self, messages: Sequence[Message], **kw: object) -> list[Sample]:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("model server hiccup")
        return await self.inner.sample(messages, **kw)  # type: ignore[arg-type]


async def test_a_raising_step_is_retried_then_dead_lettered(redis_server: RedisServer) -> None:
    url = redis_server.url
    client = aioredis.Redis.from_url(url)
    async with running_worker(url, StepHandler(registry(), Flaky(2)), max_attempts=3):
        report = await Executor(None, FirstToAheadByK(k=2), pool=RedisPool(url)).run(hanoi_chain(3))
        assert report.ok
        assert (await read_status(client)).roles[0].retried == 2
    async with running_worker(url, StepHandler(registry(), Flaky(10)), max_attempts=2):
        with pytest.raises(PoolError, match="failed 2 times, last: ConnectionError: model server hiccup"):
            await Executor(None, FirstToAheadByK(k=2), pool=RedisPool(url)).run(hanoi_chain(3))
        assert (await read_status(client)).roles[0].dead_letter == 1
    await client.aclose()


async def test_a_vote_that_fails_on_a_worker_fails_the_step_like_a_local_one(redis_server: RedisServer) -> None:
    handler = StepHandler(registry(), simulated=SimulatedSettings(red_flag_rate=1.0))
    async with running_worker(redis_server.url, handler):
        report = await Executor(None, FirstToAheadByK(k=2, max_samples=6), pool=RedisPool(redis_server.url)).run(
            hanoi_chain(3)
        )
    assert not report.completed and report.steps == 0
    assert report.failure is not None and report.failure.startswith("step 0: no answer led by 2")
    assert report.usage.samples == 6 and report.usage.red_flag_count == 6


async def test_the_stream_is_trimmed_to_the_steps_not_done(redis_server: RedisServer) -> None:
    url = redis_server.url
    client = aioredis.Redis.from_url(url)
    async with running_worker(url, trim_every_s=0.2):
        await Executor(None, FirstToAheadByK(k=2), pool=RedisPool(url)).run(hanoi_chain(6))
        assert await client.xlen("mdap:steps:hanoi") >= 0
        for _ in range(50):
            if await client.xlen("mdap:steps:hanoi") == 0:
                break
            await asyncio.sleep(0.1)
        assert await client.xlen("mdap:steps:hanoi") == 0
    await client.aclose()


async def test_results_match_the_in_process_run(redis_server: RedisServer) -> None:
    """The same chain and voter decide the same answers on the pool as in-process (the model is exact)."""
    async with running_worker(redis_server.url, StepHandler(registry(), simulated=SimulatedSettings())):
        remote = await Executor(None, FirstToAheadByK(k=2), pool=RedisPool(redis_server.url)).run(hanoi_chain(7))
    local = await Executor(simulated_hanoi_model(), FirstToAheadByK(k=2)).run(hanoi_chain(7))
    assert remote.ok and local.ok
    assert (remote.steps, remote.usage.samples, remote.verifier_errors) == (
        local.steps,
        local.usage.samples,
        local.verifier_errors,
    )


async def test_a_silent_server_is_a_clear_error_within_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        pool = RedisPool(f"redis://:pw@127.0.0.1:{port}", connect_timeout=0.5)
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(PoolError, match=r"cannot reach Redis at redis://\*\*\*@127.0.0.1:\d+ within 0.5 s") as info:
            await pool.open()
        assert asyncio.get_running_loop().time() - t0 < 3
        assert "pw" not in str(info.value)


def test_a_chain_without_a_kind_cannot_go_to_a_remote_pool() -> None:
    ms = HanoiStep(3)
    chain = Chain(ms, ms.initial(), ms.steps)
    with pytest.raises(ConfigError, match="names no step kind"):
        asyncio.run(Executor(None, FirstToAheadByK(k=2), pool=RedisPool("redis://127.0.0.1:1")).run(chain))


def test_redact_hides_credentials_only() -> None:
    assert redact("redis://:secret@h:6379/0") == "redis://***@h:6379/0"
    assert redact("rediss://user:secret@h:6380") == "rediss://***@h:6380"
    assert redact("redis://h:6379") == "redis://h:6379"
    with pytest.raises(ConfigError, match="not a Redis URL"):
        RedisPool("https://user:secret@h")


def test_voter_specs_round_trip_and_refuse_what_cannot_travel() -> None:
    for voter in (
        FirstToAheadByK(k=4, temperature=0.3, first_temperature=0.0, max_samples=40, adapter="hanoi-lora"),
        FirstToAheadByK(k=2, red_flags=RedFlagPolicy(max_completion_tokens=None, flag_truncated=False)),
        Majority(n=7, temperature=0.5),
    ):
        spec = VoterSpec.model_validate_json(VoterSpec.of(voter).model_dump_json())
        assert spec.build() == voter
    with pytest.raises(ConfigError, match="k='auto' must be resolved"):
        VoterSpec.of(FirstToAheadByK(k="auto"))
    with pytest.raises(ConfigError, match="bogus: Extra inputs are not permitted"):
        VoterSpec.parse({"kind": "first_to_ahead_by_k", "k": 2, "bogus": 1})
    with pytest.raises(ConfigError, match="'type' was renamed to 'kind'"):  # the wire format before issue 15
        VoterSpec.parse({"type": "first_to_ahead_by_k", "config": {"k": 2}})


def test_hanoi_answers_load_back_from_their_dumped_form() -> None:
    ms = HanoiStep(4)
    answer = ms.parse("move = [1, 0, 1]\nnext_state = [[4, 3, 2], [1], []]")
    assert ms.load_answer(json.loads(json.dumps(ms.dump_answer(answer)))) == answer
    with pytest.raises(ConfigError, match="not a Hanoi answer"):
        ms.load_answer({"move": [1, 0]})


async def test_local_pool_bounds_concurrency_and_decides_like_the_default() -> None:
    active = peak = 0

    class Counting:
        def __init__(self) -> None:
            self.inner = simulated_hanoi_model(latency_s=0.002)

        async def sample(self, messages: Sequence[Message], **kw: object) -> list[Sample]:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            try:
                return await self.inner.sample(messages, **kw)  # type: ignore[arg-type]
            finally:
                active -= 1

    pool = LocalPool(concurrency=2)
    model = Counting()
    reports = await asyncio.gather(
        *(Executor(model, FirstToAheadByK(k=2), pool=pool).run(hanoi_chain(4)) for _ in range(5))
    )
    assert all(r.ok for r in reports)
    assert peak == 2
    with pytest.raises(ConfigError, match="concurrency"):
        LocalPool(concurrency=0)


async def test_results_are_dropped_once_a_checkpoint_no_longer_needs_them(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url
    client = aioredis.Redis.from_url(url)
    seen: list[int] = []

    async with running_worker(url):
        pool = RedisPool(url)
        await pool.open()
        chain = hanoi_chain(7)
        executor = Executor(None, FirstToAheadByK(k=2), pool=pool, checkpoint=tmp_path / "c.json", checkpoint_every=40)
        task = asyncio.create_task(executor.run(chain))
        while not task.done():
            seen.append(len(await client.keys("mdap:result:*")))
            await asyncio.sleep(0.01)
        report = await task
        await pool.close()
    assert report.ok and report.steps == 127
    assert max(seen) <= 40 + 2, "at most about one checkpoint interval of results stays in Redis"
    assert max(seen) > 0
    assert await client.keys("mdap:result:*") == []
    await client.aclose()


class BrokenDump(HanoiStep):
    """A microstep whose answers cannot be written (a bug in a step kind)."""

    def dump_answer(self, answer: object) -> object:  # type: ignore[override]
        return object()


async def test_a_buggy_kind_does_not_kill_the_worker_and_ends_in_the_dead_letter_stream(
    redis_server: RedisServer,
) -> None:
    from mdap.pool import StepKind

    kinds = registry()
    kinds.register("broken", lambda params: StepKind(BrokenDump(3), lambda s: simulated_hanoi_model()))
    ms = HanoiStep(3)
    broken = Chain(ms, ms.initial(), ms.steps, kind=("broken", {}))
    url = redis_server.url
    async with running_worker(url, StepHandler(kinds, simulated=SimulatedSettings()), max_attempts=2) as worker:
        with pytest.raises(PoolError, match="gave up after 2 attempts"):
            await Executor(None, FirstToAheadByK(k=2), pool=RedisPool(url, role="hanoi")).run(broken)
        report = await Executor(None, FirstToAheadByK(k=2), pool=RedisPool(url)).run(hanoi_chain(3))
        assert report.ok, "the same worker still serves"
        assert worker.failed == 1


async def test_a_draining_worker_always_stops_even_when_its_upkeep_is_mid_command(redis_server: RedisServer) -> None:
    """SIGTERM drained a worker that then never exited (a CI run): its upkeep loop had lost the cancel (see
    ``stop_tasks``). Here upkeep runs back to back, and each drained worker must return cleanly."""
    stuck = 0
    for _ in range(30):
        worker = PoolWorker(
            redis_server.url,
            StepHandler(registry(), simulated=SimulatedSettings()),
            PoolWorkerConfig(role="hanoi", heartbeat_s=0.0001, claim_idle_s=1.0, block_s=0.01),
        )
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.05)
        worker.stop()
        done, _ = await asyncio.wait([task], timeout=5)
        if not done:
            stuck += 1
            worker._stopping.set()
            task.cancel()  # best effort, so the test itself ends
            await asyncio.wait([task], timeout=5)
        else:
            task.result()  # a drained worker returns cleanly
    assert stuck == 0, f"{stuck} of 30 drained workers never stopped"


async def test_stop_tasks_ends_a_task_that_sends_redis_commands_back_to_back(redis_server: RedisServer) -> None:
    """Cancelled mid-command, such a task can run on (the lost cancel of Python 3.11's ``asyncio.wait_for`` that
    redis-py writes through); ``stop_tasks`` cancels until it has ended."""
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=5)
    sent = 0

    async def busy() -> None:
        nonlocal sent
        while True:
            await asyncio.sleep(0.0005)
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset("mdap:test:beat", mapping={"n": sent})
                pipe.expire("mdap:test:beat", 5)
                await pipe.execute()
            sent += 1

    try:
        for i in range(40):
            task = asyncio.create_task(busy())
            await asyncio.sleep(0.001 * (i % 10))
            async with asyncio.timeout(10):
                await stop_tasks(task, every_s=0.05)
            assert task.done()
            before = sent
            await asyncio.sleep(0.01)
            assert sent == before, "nothing runs on after stop_tasks returns"
    finally:
        await client.aclose()
    assert sent > 0
