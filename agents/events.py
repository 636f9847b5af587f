"""Run events: a callback API and a JSONL trace.

Kinds: ``plan_created``, ``plan_approved``, ``subtask_started``, ``subtask_retried``, ``subtask_expanded``,
``subtask_finished``, ``vote_decided``, ``red_flag``, ``tool_called`` (full detail only), ``replanned``,
``run_finished``. Callbacks are plain functions called in the event loop; they must be quick (hand slow work to a
queue). When nobody listens, no event object is made at all, so events cost nothing in a large run without
listeners.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mdap._redact import redact
from mdap.errors import ConfigError

__all__ = ["EVENT_KINDS", "Event", "EventBus", "JsonlTrace", "Listener"]

EVENT_KINDS = (
    "plan_created",
    "plan_approved",
    "subtask_started",
    "subtask_retried",
    "subtask_expanded",
    "subtask_finished",
    "vote_decided",
    "red_flag",
    "tool_called",
    "replanned",
    "run_finished",
)


@dataclass(slots=True)
class Event:
    """One thing that happened in a run.

    Attributes:
        kind: one of :data:`EVENT_KINDS`.
        data: JSON-able details (ids, answers cut short, counts).
        time: ``time.time()`` when it happened.
        thread: the thread id of the run it happened in (listeners of a pipeline hear all its runs).
    """

    kind: str
    data: dict[str, Any]
    time: float
    thread: str = ""

    def to_json(self) -> str:
        """One JSON line: ``{"kind": ..., "time": ..., "thread": ..., **data}``."""
        head = {"kind": self.kind, "time": round(self.time, 6), "thread": self.thread}
        return json.dumps({**head, **self.data}, default=str)


Listener = Callable[[Event], None]


class EventBus:
    """Delivers events to listeners, each subscribed to some kinds or to all (``"*"``).

    ``detail`` is what the events carry: ``"counts"`` (the default: ids, counts, answers cut short), or
    ``"full"``: also each vote's sample texts and losing answers (``vote_decided``) and each tool call's input
    and output (``tool_called``, only then emitted).
    """

    __slots__ = ("_all", "_by_kind", "active", "detail", "thread")

    def __init__(self, *, thread: str = "") -> None:
        self.detail = "counts"
        self._all: list[Listener] = []
        self._by_kind: dict[str, list[Listener]] = {}
        self.active = False
        self.thread = thread

    def on(self, kind: str, listener: Listener) -> None:
        """Call ``listener`` for every event of ``kind`` (``"*"`` for all).

        Raises:
            ConfigError: an unknown kind.
        """
        if kind == "*":
            self._all.append(listener)
        elif kind in EVENT_KINDS:
            self._by_kind.setdefault(kind, []).append(listener)
        else:
            raise ConfigError(f"unknown event kind {kind!r}; use '*' or one of: {', '.join(EVENT_KINDS)}")
        self.active = True

    def wants(self, kind: str) -> bool:
        """Whether any listener would receive an event of ``kind`` (check before building costly data)."""
        return bool(self._all) or kind in self._by_kind

    def emit(self, kind: str, **data: Any) -> None:
        """Deliver an event to its listeners (a no-op when there are none)."""
        targets = self._by_kind.get(kind)
        if not self._all and not targets:
            return
        event = Event(kind, data, time.time(), self.thread)
        for listener in self._all:
            listener(event)
        if targets:
            for listener in targets:
                listener(event)

    def copy(self, *, thread: str | None = None) -> EventBus:
        """A bus with the same listeners (more can be added to it without touching this one), whose events name
        ``thread`` (default: this bus's)."""
        bus = EventBus(thread=self.thread if thread is None else thread)
        bus._all = list(self._all)
        bus._by_kind = {k: list(v) for k, v in self._by_kind.items()}
        bus.active = self.active
        bus.detail = self.detail
        return bus


class JsonlTrace:
    """A listener that appends every event as one JSON line to ``path``; call :meth:`close` at the end."""

    def __init__(self, path: str | Path, *, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] = open(self.path, "a" if append else "w", buffering=1 << 16)  # noqa: SIM115 -- held open

    def __call__(self, event: Event) -> None:
        self._f.write(redact(event.to_json()))  # a subtask error may name a server URL with its key
        self._f.write("\n")

    def close(self) -> None:
        """Flush and close the file."""
        self._f.close()
