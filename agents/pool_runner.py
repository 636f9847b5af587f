"""Pipelines on a Redis worker pool: the coordinator sends each subtask to the workers of its role.

Coordinator side: ``pipeline.runner(pool_runner(pool))`` with an open :class:`~mdap.pool.RedisPool`; every
work item goes to the stream of its role (``<prefix>:steps:<role>``). Worker side: a module that builds the
same pipeline and calls :func:`register_pipeline_kind`, loaded with ``mdap worker --role <role> --import
<module>``; the worker then runs items on the pipeline's own workers (their models, voters and tools).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mdap.pool import KINDS, KindRegistry, RedisPool, StepKind

from .work import LocalRunner, RunScope, WorkItem, WorkOutput

if TYPE_CHECKING:
    from .pipeline import CompiledPipeline, Pipeline, RunnerFactory
    from .worker import Worker

__all__ = ["PIPELINE_KIND", "PoolRunner", "pool_runner", "register_pipeline_kind"]

PIPELINE_KIND = "pipeline"
"""The step kind of pipeline work items."""


class PoolRunner:
    """A SubtaskRunner that runs each work item on a Redis pool (see the module docstring).

    Args:
        pool: an open RedisPool (``async with RedisPool(url) as pool``).
        kind: the step kind the workers registered the pipeline under.
    """

    def __init__(self, pool: RedisPool, *, kind: str = PIPELINE_KIND) -> None:
        self.pool = pool
        self.kind = kind

    async def __call__(self, item: WorkItem, scope: RunScope) -> WorkOutput:
        """Run ``item`` on a worker of its role; a failure on the worker raises PoolError (a failed attempt).

        The work id names the run (``scope.run_id``), so two runs of one pipeline never share a result.
        """
        work_id = f"{scope.run_id}:{item.id}:{item.attempt}"
        output = await self.pool.run_work(self.kind, work_id, item.to_dict(), role=item.role)
        return WorkOutput.from_dict(output)


def pool_runner(pool: RedisPool, *, kind: str = PIPELINE_KIND) -> RunnerFactory:
    """The runner factory for ``Pipeline.runner``: subtasks run on ``pool``'s workers."""

    def factory(workers: Mapping[str, Worker]) -> PoolRunner:
        return PoolRunner(pool, kind=kind)

    return factory


def register_pipeline_kind(
    pipeline: Pipeline | CompiledPipeline, *, registry: KindRegistry = KINDS, kind: str = PIPELINE_KIND
) -> None:
    """Let this process's pool workers run ``pipeline``'s subtasks (on its own compiled workers)."""
    compiled = pipeline.compile() if hasattr(pipeline, "compile") else pipeline
    local = LocalRunner(compiled.workers)
    quiet = RunScope()  # a worker process does not forward events: the coordinator's run emits its own

    async def work(data: Mapping[str, Any]) -> dict[str, Any]:
        return (await local(WorkItem.from_dict(data), quiet)).to_dict()

    registry.register(kind, lambda params: StepKind(work=work))
