"""``mdap pool status``: live workers, roles, queue depths, pending / reclaimed / dead-letter counts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from ._redis import connect
from .wire import GROUP, Keys

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["PoolStatus", "RoleStatus", "WorkerStatus", "pool_status", "read_status"]


class WorkerStatus(BaseModel):
    """One live worker, from its heartbeat."""

    id: str
    role: str
    host: str = ""
    pid: int = 0
    concurrency: int = 0
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    seconds_since_beat: float = 0.0
    draining: bool = False


class RoleStatus(BaseModel):
    """One role's stream and counters."""

    role: str
    workers: int = Field(description="live workers serving the role")
    queued: int = Field(description="steps published and not yet taken by any worker")
    pending: int = Field(description="steps taken by a worker and not yet acked (running, or of a dead worker)")
    stream_length: int = Field(description="entries in the stream (trimmed to the ones not done)")
    done: int = Field(description="steps whose result a worker stored")
    duplicate: int = Field(description="steps run again whose stored result was reused")
    reclaimed: int = Field(description="entries reclaimed from dead workers (XAUTOCLAIM)")
    retried: int = Field(description="steps republished after an error")
    dead_letter: int = Field(description="entries in the dead-letter stream")


class PoolStatus(BaseModel):
    """The whole pool."""

    prefix: str
    workers: list[WorkerStatus]
    roles: list[RoleStatus]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_status(client: Redis, prefix: str = "mdap") -> PoolStatus:
    """Read the status of the pool under ``prefix``; prunes workers whose heartbeat expired."""
    keys = Keys(prefix)
    now = time.time()
    workers: list[WorkerStatus] = []
    for worker_id in sorted(_text(i) for i in await client.smembers(keys.workers)):
        raw = await client.hgetall(keys.worker(worker_id))
        if not raw:
            await client.srem(keys.workers, worker_id)
            continue
        data = {_text(k): _text(v) for k, v in raw.items()}
        workers.append(
            WorkerStatus(
                id=worker_id,
                role=data.get("role", ""),
                host=data.get("host", ""),
                pid=int(data.get("pid", 0)),
                concurrency=int(data.get("concurrency", 0)),
                in_flight=int(data.get("in_flight", 0)),
                done=int(data.get("done", 0)),
                failed=int(data.get("failed", 0)),
                seconds_since_beat=round(max(0.0, now - float(data.get("beat", now))), 3),
                draining=data.get("draining") == "1",
            )
        )
    roles: list[RoleStatus] = []
    for role in sorted(_text(r) for r in await client.smembers(keys.roles)):
        stream = keys.steps(role)
        queued = pending = 0
        length = await client.xlen(stream)
        if length or await client.exists(stream):
            groups = await client.xinfo_groups(stream)
            group = next((g for g in groups if _text(g["name"]) == GROUP), None)
            if group is not None:
                pending = int(group["pending"])
                lag = group.get("lag")
                queued = int(lag) if lag is not None else max(0, length - pending)
        stats = {_text(k): int(v) for k, v in (await client.hgetall(keys.stats(role))).items()}
        roles.append(
            RoleStatus(
                role=role,
                workers=sum(1 for w in workers if w.role == role),
                queued=queued,
                pending=pending,
                stream_length=length,
                done=stats.get("done", 0),
                duplicate=stats.get("duplicate", 0),
                reclaimed=stats.get("reclaimed", 0),
                retried=stats.get("retried", 0),
                dead_letter=await client.xlen(keys.dead(role)),
            )
        )
    return PoolStatus(prefix=prefix, workers=workers, roles=roles)


async def pool_status(url: str, *, prefix: str = "mdap", connect_timeout: float = 5.0) -> PoolStatus:
    """Connect to ``url`` and read the pool's status. Raises PoolError if Redis cannot be reached."""
    client = await connect(url, connect_timeout=connect_timeout, read_timeout=connect_timeout + 5)
    try:
        return await read_status(client, prefix)
    finally:
        await client.aclose()
