"""RedisPool: the coordinator's side of the Redis worker pool.

Each step is published to the stream of its role (``<prefix>:steps:<role>``) with ``XADD``; a worker of the
consumer group runs it and pushes the result to this client's reply list; a dispatcher task pops the list and
hands each result to the step waiting for it. Nothing is lost when a reply goes missing (a Redis restart, a
coordinator restart): results are also stored under their step id, which the dispatcher reads for steps that
wait too long, and a step published again is answered from its stored result without being run twice.

A step id is ``<run>:<index>:<prompt hash>``: stable across restarts of a run (so a resumed coordinator gets
the stored results of the steps it redoes), and never reused for another prompt.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mdap.errors import ConfigError, PoolError, VoteFailed
from mdap.microstep import Chain
from mdap.models import ChatModel
from mdap.types import Message
from mdap.voters import Decision, Voter, VoterSpec

from ._redis import check_url, connect, is_connection_error, redact, retrying, stop_tasks
from .base import PoolSession
from .wire import Keys, StepResult

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisPool"]

log = logging.getLogger("mdap.pool")


@dataclass(slots=True)
class _Waiting:
    future: asyncio.Future[StepResult]
    stream: str
    payload: str
    since: float = field(default_factory=time.monotonic)
    entry: str = ""
    """The stream entry id of the step's latest publication."""
    checked: float = field(default_factory=time.monotonic)
    """When the entry was last checked for being lost (see RedisPool._find_lost)."""


class RedisPool:
    """Send steps to ``mdap worker`` processes through Redis Streams.

    Args:
        url: ``redis://[:password@]host:port/db``, or ``rediss://`` for TLS. Never printed with credentials.
        role: the role (stream) steps go to; None = the chain's step kind (``hanoi`` steps go to role
            ``hanoi``).
        prefix: prefix of every Redis key of the pool.
        connect_timeout: seconds to reach Redis before a clear PoolError.
        reconnect_timeout: seconds to keep retrying when Redis goes away mid-run (e.g. a restart).
        poll_s: how often a waiting step checks for a stored result whose reply went missing.
        warn_after_s: warn (once per role) when a step waits this long and no live worker serves its role.
        lost_check_s: how often a waiting step checks that its stream entry still exists; one that vanished
            without a result (the stream was deleted, FLUSHALL) is published again.

    Raises:
        ConfigError: not a Redis URL, or a bad setting.
    """

    def __init__(
        self,
        url: str,
        *,
        role: str | None = None,
        prefix: str = "mdap",
        connect_timeout: float = 5.0,
        reconnect_timeout: float = 30.0,
        poll_s: float = 1.0,
        warn_after_s: float = 10.0,
        lost_check_s: float = 5.0,
    ) -> None:
        self.url = check_url(url)
        if role is not None and (not role or ":" in role):
            raise ConfigError(f"a role must be a non-empty word without ':', got {role!r}")
        if connect_timeout <= 0 or reconnect_timeout < 0 or poll_s <= 0:
            raise ConfigError("connect_timeout and poll_s must be > 0, reconnect_timeout >= 0")
        self.role = role
        self.keys = Keys(prefix)
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self.poll_s = poll_s
        self.warn_after_s = warn_after_s
        self.lost_check_s = lost_check_s
        self.client_id = uuid.uuid4().hex[:12]
        self._reply_key = self.keys.reply(self.client_id)
        self._redis: Redis | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._waiting: dict[str, _Waiting] = {}
        self._broken: PoolError | None = None
        self._warned: set[str] = set()
        self._roles: set[str] = set()
        self._closing = False

    def __repr__(self) -> str:
        return f"RedisPool({redact(self.url)!r}, role={self.role!r}, prefix={self.keys.prefix!r})"

    async def open(self) -> RedisPool:
        """Connect (once) and start the dispatcher. Raises PoolError if Redis cannot be reached in time."""
        if self._redis is None:
            self._redis = await connect(self.url, connect_timeout=self.connect_timeout, read_timeout=self.poll_s + 10.0)
            self._broken = None
            self._closing = False
            self._dispatcher = asyncio.create_task(self._dispatch(self._redis), name="mdap-pool-dispatcher")
        return self

    async def close(self) -> None:
        """Stop the dispatcher and close the connection; steps still waiting fail with PoolError."""
        task, self._dispatcher = self._dispatcher, None
        client, self._redis = self._redis, None
        self._closing = True
        if task is not None and client is not None:
            # Wake the dispatcher's BLPOP with an empty item rather than cancel it mid-command: redis-py does
            # not always unwind a cancelled blocking read.
            with suppress(Exception):  # Redis may be gone; the wait below bounds the stop then
                async with asyncio.timeout(self.connect_timeout):
                    await client.rpush(self._reply_key, b"")
            await asyncio.wait([task], timeout=self.poll_s + 1.0)
            await stop_tasks(task)  # cancelled if it did not stop in time; a PoolError of it already failed the steps
        self._fail_all(PoolError("the Redis pool was closed while steps were waiting"))
        if client is not None:
            with suppress(Exception):  # closing a dead connection may raise; nothing to do about it
                async with asyncio.timeout(self.connect_timeout):
                    await client.delete(self._reply_key)
            await client.aclose()

    async def __aenter__(self) -> RedisPool:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def session(
        self, chain: Chain[Any, Any], voter: Voter, model: ChatModel | None, run_id: str
    ) -> AsyncIterator[PoolSession]:
        """A session that publishes the steps of one run of ``chain`` (``model`` is unused: workers own theirs).

        Raises:
            ConfigError: the chain names no step kind, or the voter cannot travel (see VoterSpec.of).
            PoolError: Redis cannot be reached.
        """
        if chain.kind is None:
            raise ConfigError(
                f"chain {chain.microstep.fingerprint!r} names no step kind, so workers cannot rebuild its "
                "microstep; build the Chain with kind=(name, params) and register the kind (mdap.pool.KINDS)"
            )
        kind, params = chain.kind
        voter_spec = VoterSpec.of(voter).model_dump(mode="json")
        role = self.role or kind
        owns = self._redis is None
        await self.open()
        client = self._redis
        assert client is not None
        await retrying(lambda: client.sadd(self.keys.roles, role), what="register the role", **self._retry_args())
        stream = self.keys.steps(role)
        base = {"kind": kind, "params": dict(params), "voter": voter_spec, "reply_to": self._reply_key}
        runner = _ChainSession(self, stream, base, run_id, chain.microstep.load_answer)
        try:
            yield runner
        finally:
            await runner.settle()
            if owns:
                await self.close()

    async def run_work(self, kind: str, work_id: str, work: dict[str, Any], *, role: str | None = None) -> Any:
        """Run one JSON-able work item of ``kind`` on a worker of ``role`` (default: the pool's role, else the
        kind) and return its output. ``work_id`` names the item; the same id is answered once.

        Raises:
            PoolError: the item failed on the worker (the message carries its error), or Redis is unreachable.
        """
        await self.open()
        client = self._redis
        assert client is not None
        role = role or self.role or kind
        if role not in self._roles:
            await retrying(lambda: client.sadd(self.keys.roles, role), what="register the role", **self._retry_args())
            self._roles.add(role)
        request = {"id": work_id, "kind": kind, "work": work, "reply_to": self._reply_key}
        result = await self.call(self.keys.steps(role), work_id, json.dumps(request, separators=(",", ":")))
        if result.status == "decided":
            return result.answer
        raise PoolError(f"work item {work_id} failed on worker {result.worker or '?'}: {result.error}")

    async def call(self, stream: str, step_id: str, payload: str) -> StepResult:
        """Publish one step request (JSON of a StepRequest) to ``stream`` and wait for its result.

        Raises:
            PoolError: Redis stayed unreachable longer than ``reconnect_timeout``, or the pool was closed.
        """
        if self._broken is not None:
            raise self._broken
        client = self._redis
        if client is None:
            raise PoolError("the Redis pool is not open: use `async with RedisPool(...)` or await pool.open()")
        future: asyncio.Future[StepResult] = asyncio.get_running_loop().create_future()
        waiting = self._waiting[step_id] = _Waiting(future, stream, payload)
        try:
            entry = await retrying(
                lambda: client.xadd(stream, {"job": payload}), what="publish a step", **self._retry_args()
            )
            waiting.entry = _text(entry)
            return await future
        finally:
            self._waiting.pop(step_id, None)

    def _retry_args(self) -> dict[str, Any]:
        return {"url": self.url, "deadline_s": self.reconnect_timeout, "on_retry": self._note_retry}

    def _note_retry(self, err: BaseException) -> None:
        log.warning("Redis at %s unreachable (%s); retrying", redact(self.url), type(err).__name__)

    def _fail_all(self, err: PoolError) -> None:
        for waiting in list(self._waiting.values()):
            if not waiting.future.done():
                waiting.future.set_exception(err)

    def _resolve(self, raw: bytes | str) -> None:
        try:
            result = StepResult.model_validate_json(raw)
        except ValidationError:
            log.warning("ignored a malformed reply on %s", self._reply_key)
            return
        waiting = self._waiting.get(result.id)
        if waiting is not None and not waiting.future.done():
            waiting.future.set_result(result)

    async def _dispatch(self, client: Redis) -> None:
        """Pop replies; recover stored results of steps that wait long; survive Redis restarts."""
        while not self._closing:
            try:
                item = await client.blpop([self._reply_key], timeout=self.poll_s)
                if self._closing:
                    return
                if item is not None:
                    self._resolve(item[1])
                    continue
                await self._recover(client, resubmit=False)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if not is_connection_error(err):
                    log.exception("the pool dispatcher hit an unexpected error; retrying")
                    await asyncio.sleep(self.poll_s)
                    continue
                self._note_retry(err)
                try:
                    await retrying(client.ping, what="reconnect", **self._retry_args())
                    await self._recover(client, resubmit=True)
                except PoolError as lost:
                    self._broken = lost
                    self._fail_all(lost)
                    return

    async def _recover(self, client: Redis, *, resubmit: bool) -> None:
        """Resolve waiting steps whose results are stored; after a reconnect, publish the others again.

        Publishing a step twice is safe: a worker answers a step with a stored result from the store.
        """
        now = time.monotonic()
        stale = [(sid, w) for sid, w in list(self._waiting.items()) if resubmit or now - w.since >= self.poll_s]
        if not stale:
            return
        stored = await client.mget([self.keys.result(sid) for sid, _ in stale])
        unanswered: list[tuple[str, _Waiting]] = []
        for (sid, waiting), raw in zip(stale, stored, strict=True):
            if raw is not None:
                self._resolve(raw)
            elif resubmit:
                waiting.entry = _text(await client.xadd(waiting.stream, {"job": waiting.payload}))
            elif now - waiting.checked >= self.lost_check_s:
                unanswered.append((sid, waiting))
        if unanswered:
            await self._find_lost(client, unanswered, now)
        oldest = max((now - w.since for _, w in stale), default=0.0)
        if oldest >= self.warn_after_s:
            await self._warn_if_no_workers(client, {w.stream for _, w in stale})

    async def _find_lost(self, client: Redis, waiting: list[tuple[str, _Waiting]], now: float) -> None:
        """Publish again the steps whose stream entry is gone while no result is stored.

        An entry leaves the stream only once a worker acked it -- after storing its result, or after publishing a
        retry (whose entry id it records under ``moved:<step>``) -- or when the stream is deleted (DEL, FLUSHALL):
        then nobody will ever answer the step. Publishing it again is safe (see :meth:`_recover`).
        """
        async with client.pipeline(transaction=False) as pipe:
            for sid, _ in waiting:
                pipe.get(self.keys.moved(sid))
            moved = await pipe.execute()
        async with client.pipeline(transaction=False) as pipe:
            for (_, w), retry in zip(waiting, moved, strict=True):
                w.checked = now
                entry = _text(retry) if retry is not None else w.entry
                pipe.xrange(w.stream, entry, entry, count=1)
            found = await pipe.execute()
        lost = [(sid, w) for (sid, w), hit in zip(waiting, found, strict=True) if not hit]
        if not lost:
            return
        results = await client.mget([self.keys.result(sid) for sid, _ in lost])
        again = [(sid, w) for (sid, w), raw in zip(lost, results, strict=True) if raw is None]
        for raw in results:
            if raw is not None:
                self._resolve(raw)
        for _, w in again:
            w.entry = _text(await client.xadd(w.stream, {"job": w.payload}))
        if again:
            log.warning(
                "%d waiting step(s) vanished from %s without a result (stream deleted or FLUSHALL?); published again",
                len(again),
                ", ".join(sorted({w.stream for _, w in again})),
            )

    async def _warn_if_no_workers(self, client: Redis, streams: set[str]) -> None:
        roles = {s.rsplit(":", 1)[-1] for s in streams} - self._warned
        if not roles:
            return
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in await client.smembers(self.keys.workers)]
        live = set()
        for worker_id in ids:
            role = await client.hget(self.keys.worker(worker_id), "role")
            if role is not None:
                live.add(role.decode() if isinstance(role, bytes) else str(role))
        for role in sorted(roles - live):
            self._warned.add(role)
            log.warning(
                "steps of role %r have waited %.0f s and no live worker serves the role; start one with "
                "`mdap worker --redis %s --role %s --model ...`",
                role,
                self.warn_after_s,
                redact(self.url),
                role,
            )


class _ChainSession:
    """The session of one chain run on a RedisPool.

    It remembers the ids of the steps it got results for; when the executor checkpoints past them, their
    stored results are no longer needed for a resume and are deleted, so a long run keeps at most about one
    checkpoint interval of results in Redis (the rest expire after the workers' result TTL anyway).
    """

    def __init__(
        self, pool: RedisPool, stream: str, base: dict[str, Any], run_id: str, load: Callable[[Any], Any]
    ) -> None:
        self.pool = pool
        self.stream = stream
        self.base = base
        self.run_id = run_id
        self.load = load
        self.settled: list[str] = []
        self.cleanups: set[asyncio.Task[None]] = set()

    async def decide(self, step: int, messages: list[Message]) -> Decision[Any]:
        """Publish the step (or find its stored result) and wait for its decision."""
        text = json.dumps(messages, separators=(",", ":"))
        digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
        step_id = f"{self.run_id}:{step}:{digest}"
        payload = json.dumps({**self.base, "id": step_id, "messages": messages}, separators=(",", ":"))
        result = await self.pool.call(self.stream, step_id, payload)
        self.settled.append(step_id)
        return _decision(result, self.load)

    def checkpointed(self, next_step: int) -> None:
        """The run is checkpointed at ``next_step``: drop the stored results of the steps before it."""
        ids, self.settled = self.settled, []
        client = self.pool._redis
        if ids and client is not None:
            task = asyncio.get_running_loop().create_task(self._drop(client, ids))
            self.cleanups.add(task)
            task.add_done_callback(self.cleanups.discard)

    async def _drop(self, client: Redis, ids: list[str]) -> None:
        keys = self.pool.keys
        try:
            for i in range(0, len(ids), 1000):
                await client.unlink(*(keys.result(sid) for sid in ids[i : i + 1000]))
        except Exception as err:  # only memory is at stake: the results expire on their own
            log.warning("could not drop %d settled results (%s); they expire on their own", len(ids), err)

    async def settle(self) -> None:
        """Wait for the pending result deletions."""
        if self.cleanups:
            await asyncio.gather(*self.cleanups, return_exceptions=True)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decision(result: StepResult, load: Callable[[Any], Any]) -> Decision[Any]:
    if result.status == "decided":
        return Decision(load(result.answer), result.votes, result.usage)
    if result.status == "vote_failed":
        raise VoteFailed(
            result.error or "the vote failed on a worker",
            tally=result.tally or {},
            red_flags=result.usage.red_flags,
            samples=result.usage.samples,
        )
    raise PoolError(f"step {result.id} failed on the pool: {result.error}; see `mdap pool status` (dead letters)")
