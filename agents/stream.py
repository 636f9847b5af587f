"""RunStream: one pipeline run's events as an async iterator (``pipeline.stream(task)``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from mdap.errors import ConfigError

from .events import Event, Listener
from .results import RunResult

__all__ = ["RunStream"]


class RunStream:
    """The events of one run as they happen, ending after ``run_finished``; then :attr:`result` holds the result.

    The run starts at the first ``__anext__``; a run that raises (a ``PlanError``, say) raises from the iterator
    after its last event. Leaving the loop early leaves the run going; :meth:`aclose` cancels it.

        stream = pipeline.stream("task")
        async for event in stream:
            print(event.kind, event.data)
        print(stream.result.answer)
    """

    def __init__(self, start: Callable[[Listener], Awaitable[RunResult]]) -> None:
        self._start = start
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._result: RunResult | None = None

    @property
    def result(self) -> RunResult:
        """The run's result, once the iterator has ended.

        Raises:
            ConfigError: the run has not finished (iterate the stream to its end first).
        """
        if self._result is None:
            raise ConfigError("the run has not finished: iterate the stream to its end before reading its result")
        return self._result

    def __aiter__(self) -> RunStream:
        return self

    async def __anext__(self) -> Event:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        event = await self._queue.get()
        if event is None:
            await self._task  # the run's own error, if it raised
            raise StopAsyncIteration
        return event

    async def _run(self) -> None:
        try:
            self._result = await self._start(self._queue.put_nowait)
        finally:
            self._queue.put_nowait(None)

    async def aclose(self) -> None:
        """Cancel the run if it is still going."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # the cancellation asked for above
                await task
