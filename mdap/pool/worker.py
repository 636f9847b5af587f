"""The Redis worker: a long-lived consumer of one role's step stream.

``concurrency`` slots read the stream with ``XREADGROUP`` (one entry each), hand each step to the
:class:`~mdap.pool.handler.StepHandler`, then write the result and ack in one atomic script (result first: a
step is acked only once its result is stored). A maintenance task beats the heartbeat, keeps this worker's
in-flight entries fresh (so only dead workers' entries look idle), reclaims entries idle longer than
``claim_idle_s`` with ``XAUTOCLAIM``, and trims the stream to the entries not yet done. A step that raised is
republished up to ``max_attempts``; then -- or at once for a malformed request -- it goes to the dead-letter
stream with the error, and its coordinator gets a ``failed`` result. ``stop()`` drains: no new steps are
taken, running ones finish, and :meth:`PoolWorker.run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mdap.errors import ConfigError, PoolError

from ._redis import connect, redact, retrying, stop_tasks
from .handler import StepHandler
from .wire import GROUP, Keys, StepRequest, StepResult

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.typing import EncodableT, FieldT

__all__ = ["PoolWorker", "PoolWorkerConfig"]

log = logging.getLogger("mdap.worker")

# Store the result once (SET NX), push the stored result to the coordinator, ack -- atomically. The ack
# always happens: a reply list (or result key) of the wrong type must not leave the entry pending forever, so
# those commands run under pcall and their error comes back as the second item ("" when all went well).
_FINISH = """
local problem = ''
local stored = redis.pcall('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
if type(stored) == 'table' and stored.err then
  problem = 'result key ' .. KEYS[1] .. ': ' .. stored.err
  stored = false
end
local result = ARGV[1]
if stored then
  redis.pcall('HINCRBY', KEYS[4], ARGV[5], 1)
elseif problem == '' then
  local old = redis.pcall('GET', KEYS[1])
  if type(old) == 'table' and old.err then
    problem = 'result key ' .. KEYS[1] .. ': ' .. old.err
  elseif type(old) == 'string' then
    result = old
  end
  redis.pcall('HINCRBY', KEYS[4], 'duplicate', 1)
end
local pushed = redis.pcall('RPUSH', KEYS[2], result)
if type(pushed) == 'table' and pushed.err then
  if problem == '' then problem = 'reply_to ' .. KEYS[2] .. ': ' .. pushed.err end
else
  redis.pcall('EXPIRE', KEYS[2], ARGV[2])
end
redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])
if stored then return {1, problem} end
return {0, problem}
"""

_MAX_DEAD_PAYLOAD = 65536


@dataclass(frozen=True, slots=True)
class PoolWorkerConfig:
    """How a worker behaves.

    Args:
        role: the role (stream) it serves.
        concurrency: steps it runs at once.
        prefix: key prefix of the pool.
        claim_idle_s: an entry pending this long is taken to belong to a dead worker and reclaimed.
        heartbeat_s: seconds between heartbeats (a worker is gone after 3 missed beats).
        max_attempts: deliveries per step (crashes and errors) before it goes to the dead-letter stream.
        result_ttl_s: how long results are kept (for duplicates and coordinator restarts).
        trim_every_s: seconds between stream trims.
        block_s: how long an idle slot blocks on the stream (also the drain latency).
        connect_timeout: seconds to reach Redis at start.
        reconnect_timeout: seconds to keep retrying when Redis goes away.
        dead_maxlen: the dead-letter stream is trimmed to about this many entries.
    """

    role: str
    concurrency: int = 1
    prefix: str = "mdap"
    claim_idle_s: float = 30.0
    heartbeat_s: float = 2.0
    max_attempts: int = 3
    result_ttl_s: int = 3600
    trim_every_s: float = 10.0
    block_s: float = 1.0
    connect_timeout: float = 5.0
    reconnect_timeout: float = 60.0
    dead_maxlen: int = 10_000

    def __post_init__(self) -> None:
        if not self.role or ":" in self.role:
            raise ConfigError(f"a role must be a non-empty word without ':', got {self.role!r}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if not all(0 < s < math.inf for s in (self.claim_idle_s, self.heartbeat_s, self.block_s)):  # nan fails too
            raise ConfigError("claim_idle_s, heartbeat_s and block_s must be finite and > 0")
        if self.max_attempts < 1 or self.result_ttl_s < 1:
            raise ConfigError("max_attempts and result_ttl_s must be >= 1")


class PoolWorker:
    """Serves one role of the pool at ``url`` with a :class:`StepHandler` (see the module docstring)."""

    def __init__(
        self, url: str, handler: StepHandler, config: PoolWorkerConfig, *, worker_id: str | None = None
    ) -> None:
        self.url = url
        self.handler = handler
        self.config = config
        self.keys = Keys(config.prefix)
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        handler.worker_id = handler.worker_id or self.id
        self.stream = self.keys.steps(config.role)
        self.done = 0
        self.failed = 0
        self._stopping = asyncio.Event()
        self._in_flight: set[str] = set()
        self._claimed: asyncio.Queue[tuple[str, Mapping[Any, Any], int]] = asyncio.Queue()
        self._redis: Redis | None = None
        self._finish: Any = None

    def stop(self) -> None:
        """Drain: take no new step, let running steps finish; :meth:`run` then returns."""
        if not self._stopping.is_set():
            log.info("worker %s draining (%d in flight)", self.id, len(self._in_flight))
        self._stopping.set()

    def log_tasks(self) -> None:
        """Log what every asyncio task of this process is waiting on (``mdap worker`` runs this on SIGUSR1)."""
        tasks = asyncio.all_tasks()
        log.warning("worker %s: %d tasks, %d steps in flight, draining=%s", self.id, len(tasks), len(self._in_flight),
                    self._stopping.is_set())  # fmt: skip
        for task in tasks:
            out = io.StringIO()
            task.print_stack(file=out)
            log.warning("%s", out.getvalue().rstrip())

    async def run(self) -> None:
        """Serve until :meth:`stop`. Raises PoolError if Redis cannot be reached (or stays away too long)."""
        cfg = self.config
        client = self._redis = await connect(
            self.url, connect_timeout=cfg.connect_timeout, read_timeout=cfg.block_s + 10
        )
        self._finish = client.register_script(_FINISH)
        try:
            await self._retry(self._ensure_group, "create the consumer group")
            await self._retry(lambda: client.sadd(self.keys.roles, cfg.role), "register the role")
            await self._retry(self._beat, "announce the worker")
            log.info(
                "worker %s serving role %r on %s (concurrency %d)", self.id, cfg.role, redact(self.url), cfg.concurrency
            )
            upkeep = asyncio.create_task(self._maintain(), name="mdap-worker-upkeep")
            slots = [asyncio.create_task(self._slot(), name=f"mdap-worker-slot-{i}") for i in range(cfg.concurrency)]
            try:
                await asyncio.gather(*slots)
            finally:
                await stop_tasks(upkeep, *slots)
            await self._leave(client)
            log.info("worker %s stopped after %d steps", self.id, self.done)
        finally:
            self._redis = None
            await client.aclose()

    async def _retry(self, op: Any, what: str) -> Any:
        return await retrying(op, what=what, url=self.url, deadline_s=self.config.reconnect_timeout)

    async def _ensure_group(self) -> None:
        from redis.exceptions import ResponseError

        assert self._redis is not None
        try:
            await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    async def _recreate_group(self, err: BaseException) -> None:
        """The stream or its consumer group vanished (DEL, FLUSHALL, a Redis restart without persistence):
        create them again and keep serving."""
        log.warning(
            "worker %s: the stream %s or its consumer group is gone (%s); recreating it and serving on",
            self.id,
            self.stream,
            _first_line(err),
        )
        await self._retry(self._ensure_group, "create the consumer group")

    async def _beat(self) -> None:
        assert self._redis is not None
        cfg = self.config
        key = self.keys.worker(self.id)
        fields: dict[FieldT, EncodableT] = {
            "id": self.id,
            "role": cfg.role,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": cfg.concurrency,
            "in_flight": len(self._in_flight),
            "done": self.done,
            "failed": self.failed,
            "beat": time.time(),
            "draining": int(self._stopping.is_set()),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, max(3, int(3 * cfg.heartbeat_s + 1)))
            pipe.sadd(self.keys.workers, self.id)
            pipe.sadd(self.keys.roles, cfg.role)  # again each beat: a Redis restart without persistence forgets it
            await pipe.execute()

    async def _leave(self, client: Redis) -> None:
        """Remove the heartbeat; delete this consumer unless entries are still pending on it (others reclaim)."""
        try:
            pending = await client.xpending_range(self.stream, GROUP, "-", "+", 1, consumername=self.id)
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.worker(self.id))
                pipe.srem(self.keys.workers, self.id)
                if not pending:
                    pipe.xgroup_delconsumer(self.stream, GROUP, self.id)
                await pipe.execute()
        except Exception as err:  # leaving is best effort: the heartbeat expires on its own
            log.warning("worker %s could not sign off cleanly (%s)", self.id, type(err).__name__)

    async def _slot(self) -> None:
        assert self._redis is not None
        client = self._redis
        block_ms = int(self.config.block_s * 1000)
        while not self._stopping.is_set():
            if not self._claimed.empty():
                entry_id, fields, deliveries = self._claimed.get_nowait()
                await self._process(entry_id, fields, deliveries)
                continue
            try:
                batch = await self._retry(
                    lambda: client.xreadgroup(GROUP, self.id, {self.stream: ">"}, count=1, block=block_ms),
                    "read steps",
                )
            except Exception as err:
                if _group_gone(err):
                    await self._recreate_group(err)
                    continue
                raise
            for _stream, entries in batch or []:
                for entry_id, fields in entries:
                    await self._process(_text(entry_id), fields, 1)

    async def _process(self, entry_id: str, fields: Mapping[Any, Any], deliveries: int) -> None:
        from redis.exceptions import ResponseError

        self._in_flight.add(entry_id)
        try:
            await self._retry(lambda: self._step(entry_id, fields, deliveries), "finish a step")
        except PoolError:
            raise  # Redis stayed away: the worker stops with the error
        except ResponseError as err:
            # Redis refused a command of this entry (a key of the wrong type, ...): asking again gives the same
            # answer, so the entry cannot be answered -- dead-letter it once and ack it.
            if _group_gone(err):
                await self._recreate_group(err)
            else:
                await self._give_up(entry_id, fields, f"Redis refused the step: {_first_line(err)}", deliveries)
        except Exception:
            # A bug: keep serving. The entry stays pending without keep-alive, so it is reclaimed after
            # claim_idle_s and counts one more delivery toward the dead-letter stream.
            log.exception("step entry %s failed unexpectedly; it will be reclaimed and retried", entry_id)
        finally:
            self._in_flight.discard(entry_id)

    async def _give_up(self, entry_id: str, fields: Mapping[Any, Any], error: str, deliveries: int) -> None:
        """Dead-letter an entry that cannot be answered, and ack it whatever happens, so it is never reclaimed."""
        try:
            request: StepRequest | None = self.handler.parse(fields)
        except ConfigError:
            request = None
        try:
            await self._retry(lambda: self._dead(entry_id, fields, error, request, deliveries), "dead-letter a step")
        except PoolError:
            raise
        except Exception as err:
            log.warning("step entry %s could not be dead-lettered (%s); acking it", entry_id, _first_line(err))
            assert self._redis is not None
            client = self._redis
            await self._retry(lambda: client.xack(self.stream, GROUP, entry_id), "ack a step")

    async def _step(self, entry_id: str, fields: Mapping[Any, Any], deliveries: int) -> None:
        assert self._redis is not None
        cfg = self.config
        try:
            request = self.handler.parse(fields)
        except ConfigError as err:
            await self._dead(entry_id, fields, f"malformed step request: {err}", None, deliveries)
            return
        attempts = max(deliveries, request.attempt)
        if attempts > cfg.max_attempts:
            why = f"gave up after {attempts - 1} attempts (workers died or the step raised each time)"
            await self._dead(entry_id, fields, why, request, attempts)
            return
        stored = await self._redis.get(self.keys.result(request.id))
        if stored is not None:  # run before (a crash between result and ack, or a resumed coordinator)
            await self._complete(entry_id, request, _text(stored), "done")
            return
        try:
            result = await self.handler.run(request)
        except ConfigError as err:
            await self._dead(entry_id, fields, str(err), request, attempts)
            return
        except Exception as err:
            detail = f"{type(err).__name__}: {err}"
            if request.attempt >= cfg.max_attempts:
                await self._dead(entry_id, fields, f"failed {request.attempt} times, last: {detail}", request, attempts)
                return
            log.warning("step %s failed (%s); retry %d of %d", request.id, detail, request.attempt, cfg.max_attempts)
            retry = request.model_copy(update={"attempt": request.attempt + 1})
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xadd(self.stream, {"job": retry.model_dump_json()})
                pipe.xack(self.stream, GROUP, entry_id)
                pipe.hincrby(self.keys.stats(cfg.role), "retried", 1)
                new_entry, *_ = await pipe.execute()
            # the coordinator checks that its step's entry still exists; this names the entry that replaced it
            await self._redis.set(self.keys.moved(request.id), new_entry, ex=cfg.result_ttl_s)
            return
        if await self._complete(entry_id, request, result.model_dump_json(), "done"):
            self.done += 1

    async def _complete(self, entry_id: str, request: StepRequest, result_json: str, counter: str) -> bool:
        """Store the result, push it to ``reply_to``, ack. The entry is acked even when Redis refuses the
        result or the reply (a key of the wrong type): then it is dead-lettered once and this returns False."""
        keys = [self.keys.result(request.id), request.reply_to, self.stream, self.keys.stats(self.config.role)]
        reply = await self._finish(keys=keys, args=[result_json, self.config.result_ttl_s, GROUP, entry_id, counter])
        problem = _text(reply[1]) if isinstance(reply, list | tuple) and len(reply) > 1 else ""
        if not problem:
            return True
        if counter != "failed":  # not already on its way to the dead-letter stream
            await self._dead(entry_id, {}, f"cannot answer the step: {problem}", request, 0, notify=False)
        else:
            log.warning("step %s: could not tell its coordinator it failed (%s)", request.id, problem)
        return False

    async def _dead(
        self,
        entry_id: str,
        fields: Mapping[Any, Any],
        error: str,
        request: StepRequest | None,
        attempts: int,
        *,
        notify: bool = True,
    ) -> None:
        """Move the entry to the dead-letter stream and ack it; tell its coordinator, if we know who that is."""
        assert self._redis is not None
        cfg = self.config
        self.failed += 1
        log.warning("step entry %s dead-lettered: %s", entry_id, error)
        raw = fields.get(b"job", fields.get("job")) or (request.model_dump_json() if request else repr(dict(fields)))
        record: dict[FieldT, EncodableT] = {
            "entry": entry_id,
            "step": request.id if request else "",
            "error": error,
            "worker": self.id,
            "attempts": attempts,
            "job": _text(raw)[:_MAX_DEAD_PAYLOAD],
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.dead(cfg.role), record, maxlen=cfg.dead_maxlen, approximate=True)
            pipe.hincrby(self.keys.stats(cfg.role), "dead", 1)
            pipe.xack(self.stream, GROUP, entry_id)  # in the same transaction: dead-lettered exactly once
            await pipe.execute()
        if request is not None and notify:
            failed = StepResult(id=request.id, status="failed", error=error, worker=self.id)
            await self._complete(entry_id, request, failed.model_dump_json(), "failed")

    async def _maintain(self) -> None:
        cfg = self.config
        tick = min(cfg.heartbeat_s, cfg.claim_idle_s / 3)
        next_trim = time.monotonic() + cfg.trim_every_s
        while True:
            await asyncio.sleep(tick)
            try:
                await self._beat()
                await self._keep_alive()
                if not self._stopping.is_set() and self._claimed.empty():
                    await self._reclaim()
                if time.monotonic() >= next_trim:
                    next_trim = time.monotonic() + cfg.trim_every_s
                    await self._trim()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # upkeep must not kill the worker; the slots report a lasting outage
                if _group_gone(err):
                    with contextlib.suppress(Exception):  # the slots recreate it too, and report a lasting outage
                        await self._recreate_group(err)
                    continue
                log.warning("worker upkeep failed (%s: %s); retrying", type(err).__name__, err)

    async def _keep_alive(self) -> None:
        """Reset the idle time of our own pending entries, so only entries of dead workers look idle."""
        assert self._redis is not None
        ids: list[int | bytes | str | memoryview[int]] = list(self._in_flight)
        if ids:
            await self._redis.xclaim(self.stream, GROUP, self.id, 0, ids, justid=True)

    async def _reclaim(self) -> None:
        """XAUTOCLAIM entries idle longer than ``claim_idle_s`` (their worker died) and queue them here."""
        assert self._redis is not None
        cfg = self.config
        idle_ms = int(cfg.claim_idle_s * 1000)
        reply = await self._redis.xautoclaim(self.stream, GROUP, self.id, idle_ms, "0-0", count=cfg.concurrency)
        claimed = [(_text(i), f) for i, f in reply[1] if i is not None and f is not None]
        if not claimed:
            return
        await self._redis.hincrby(self.keys.stats(cfg.role), "reclaimed", len(claimed))
        for entry_id, fields in claimed:
            info = await self._redis.xpending_range(self.stream, GROUP, entry_id, entry_id, 1)
            deliveries = int(info[0]["times_delivered"]) if info else 1
            log.info("reclaimed step entry %s (delivery %d) from a dead worker", entry_id, deliveries)
            self._in_flight.add(entry_id)
            self._claimed.put_nowait((entry_id, fields, deliveries))

    async def _trim(self) -> None:
        """Drop entries every worker is done with: those before the oldest pending or undelivered one."""
        assert self._redis is not None
        summary = await self._redis.xpending(self.stream, GROUP)
        if summary.get("pending"):
            min_id = _text(summary["min"])
        else:
            groups = await self._redis.xinfo_groups(self.stream)
            last = next((_text(g["last-delivered-id"]) for g in groups if _text(g["name"]) == GROUP), "0-0")
            ms, _, seq = last.partition("-")
            min_id = f"{ms}-{int(seq or 0) + 1}"
        await self._redis.xtrim(self.stream, minid=min_id, approximate=False)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _group_gone(err: BaseException) -> bool:
    """Whether ``err`` says the stream or its consumer group no longer exists (NOGROUP; Redis 7 unblocks a
    blocked XREADGROUP whose stream was deleted with "UNBLOCKED the stream key no longer exists")."""
    text = str(err)
    return "NOGROUP" in text or "no longer exists" in text


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
