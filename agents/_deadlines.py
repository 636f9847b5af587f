"""Per-attempt timeouts for thousands of subtasks: one watchdog instead of a timer per attempt.

``asyncio.timeout`` arms and cancels a loop timer per attempt, which costs more than the rest of a zero-latency
subtask. Here an attempt only records its deadline in a dict; one watchdog task wakes every ``tick`` seconds
(a twentieth of the timeout, between 5 ms and 250 ms) and cancels the tasks whose deadline has passed, so a
timeout fires at most one tick late.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

__all__ = ["Deadlines"]


class Deadlines:
    """Deadlines of running attempts, keyed by the task that runs each."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.tick = min(max(seconds / 20, 0.005), 0.25)
        self._due: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._watchdog: asyncio.Task[None] | None = None

    def arm(self, task: asyncio.Task[object]) -> None:
        """Start the clock of ``task``'s attempt."""
        self._due[task] = time.monotonic() + self.seconds
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    def disarm(self, task: asyncio.Task[object]) -> bool:
        """Stop the clock; True if the attempt ran out of time (its cancellation is then taken back)."""
        del self._due[task]
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            for task, due in list(self._due.items()):  # at most max_concurrency entries
                if due <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()

    async def close(self) -> None:
        """Stop the watchdog."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
