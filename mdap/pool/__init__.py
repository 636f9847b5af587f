"""Pools: where the executor's steps are decided.

``LocalPool`` (in-process asyncio, the default) and ``RedisPool`` (Redis Streams + consumer groups, steps run
by ``mdap worker`` processes). Upper layers register the step kinds workers can run in :data:`KINDS`.
redis-py is imported only when a Redis pool connects, so importing this package stays light.
"""

from __future__ import annotations

from .base import Pool, PoolSession, StepRunner
from .handler import StepHandler
from .kinds import KINDS, KindRegistry, SimulatedSettings, StepKind, StepKindFactory
from .local import LocalPool
from .redis_pool import RedisPool
from .status import PoolStatus, RoleStatus, WorkerStatus, pool_status, read_status
from .wire import Keys, StepRequest, StepResult
from .worker import PoolWorker, PoolWorkerConfig

__all__ = [
    "KINDS",
    "Keys",
    "KindRegistry",
    "LocalPool",
    "Pool",
    "PoolSession",
    "PoolStatus",
    "RedisPool",
    "RoleStatus",
    "SimulatedSettings",
    "StepHandler",
    "StepKind",
    "StepKindFactory",
    "StepRequest",
    "StepResult",
    "StepRunner",
    "PoolWorker",
    "PoolWorkerConfig",
    "WorkerStatus",
    "pool_status",
    "read_status",
]
