"""Where a run's plans and subtask results are kept, typed, and persisted as they complete, so a killed run
resumes without redoing them.

The graph's checkpointed state holds only ids (plan numbers, fingerprints) and status; the :class:`Plan` and
:class:`SubtaskResult` values live here. Results are keyed by (thread id, subtask fingerprint); the fingerprint
covers the subtask's id, role, instruction and, recursively, its dependencies, so a replanned subtask that
changed is never mistaken for the old one. A split subtask's entry is the sub-plan it became until its parts
finish. The SQLite store group-commits: every value is written when it is put and committed at the end of the
event-loop iteration, so results finishing together share one commit (a commit costs ~60 us here, too much to pay
for each of 10,000 zero-latency subtasks).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ormsgpack  # a dependency of langgraph's checkpointers: 10x faster than json.dumps for these records

from mdap.errors import CheckpointError, PlanError
from mdap.planners import Plan, Subtask

from .results import SubtaskResult

__all__ = ["Done", "MemoryStore", "ResultStore", "SqliteStore", "fingerprints"]

_SQLITE_MAGIC = b"SQLite format 3\x00"

Done = SubtaskResult | Plan
"""What the store holds for a subtask: its result, or the sub-plan it was split into."""

Spent = dict[str, dict[str, Any]]
"""What each module (role) spent over the run's execute passes (see :func:`~mdap.agents.results.add_spent`)."""


class ResultStore:
    """The interface the run uses; this base keeps everything in memory (no resume across processes)."""

    def __init__(self) -> None:
        self._done: dict[str, dict[str, Done]] = {}
        self._plans: dict[tuple[str, int], Plan] = {}
        self._spent: dict[str, Spent] = {}

    def load(self, thread: str) -> dict[str, Done]:
        """Every result (or split) of ``thread`` by fingerprint."""
        return dict(self._done.get(thread, {}))

    def put(self, thread: str, fingerprint: str, done: Done) -> None:
        """Keep one result or split (durable by the end of this event-loop iteration)."""
        self._done.setdefault(thread, {})[fingerprint] = done

    def put_plan(self, thread: str, number: int, plan: Plan) -> None:
        """Keep plan ``number`` of ``thread`` (0 is the first plan; replans and edits count up)."""
        self._plans[thread, number] = plan

    def plan(self, thread: str, number: int) -> Plan:
        """Plan ``number`` of ``thread``.

        Raises:
            CheckpointError: no such plan (the results file was deleted or belongs to another checkpoint).
        """
        plan = self._plans.get((thread, number))
        if plan is None:
            raise CheckpointError(f"plan {number} of thread {thread!r} is missing from the results store")
        return plan

    def put_spent(self, thread: str, spent: Spent) -> None:
        """Keep what the modules of ``thread`` spent so far (over sessions)."""
        self._spent[thread] = spent

    def spent(self, thread: str) -> Spent:
        """What the modules of ``thread`` spent so far ({} for a new run)."""
        return self._spent.get(thread, {})

    def flush(self) -> None:
        """Make everything put so far durable now."""

    def clear(self, thread: str) -> None:
        """Forget everything of ``thread``."""
        self._done.pop(thread, None)
        self._spent.pop(thread, None)
        for key in [k for k in self._plans if k[0] == thread]:
            del self._plans[key]

    def close(self) -> None:
        """Flush and release resources."""


class MemoryStore(ResultStore):
    """Keeps the values in memory, as they are (no resume across processes)."""


class SqliteStore(ResultStore):
    """Records in a SQLite file (WAL) beside LangGraph's checkpoint file (see :meth:`beside`).

    Not the checkpoint file itself: LangGraph's saver keeps write transactions open across awaits on its own
    thread, and a synchronous writer on the same file would wait for the lock while blocking the event loop
    that the saver needs to commit.
    """

    @staticmethod
    def check_file(path: str | Path, what: str) -> None:
        """Refuse a file that exists but is not an SQLite database (a garbage checkpoint), before SQLite or
        LangGraph open it and fail deep inside with ``file is not a database``.

        Raises:
            CheckpointError: ``path`` is a directory, cannot be read, or is not an SQLite database.
        """
        p = Path(path)
        try:
            with p.open("rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            return
        except OSError as err:
            raise CheckpointError(f"cannot read the {what} {p}: {err.strerror or err}") from None
        if head and head != _SQLITE_MAGIC:
            raise CheckpointError(f"the {what} {p} is not an SQLite database: delete it, or give another --checkpoint")

    @staticmethod
    def beside(checkpoint: str | Path) -> Path:
        """The results file of a checkpoint file: ``runs.sqlite`` -> ``runs.results.sqlite``."""
        path = Path(checkpoint)
        return path.with_name(f"{path.stem}.results{path.suffix or '.sqlite'}")

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        for table, key in (("mdap_subtask_results", "fingerprint"), ("mdap_run_values", "key")):
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ("
                f"thread_id TEXT NOT NULL, {key} TEXT NOT NULL, record BLOB NOT NULL, PRIMARY KEY (thread_id, {key}))"
            )
        self._pending: list[tuple[str, str, str, bytes]] = []
        self._scheduled = False

    def load(self, thread: str) -> dict[str, Done]:
        rows = self._db.execute(
            "SELECT fingerprint, record FROM mdap_subtask_results WHERE thread_id = ?", (thread,)
        ).fetchall()
        return {fp: _decode(ormsgpack.unpackb(rec)) for fp, rec in rows}

    def put(self, thread: str, fingerprint: str, done: Done) -> None:
        record = (
            done.to_record() if isinstance(done, SubtaskResult) else {"status": "expanded", "plan": done.model_dump()}
        )
        self._write("mdap_subtask_results", thread, fingerprint, record)

    def put_plan(self, thread: str, number: int, plan: Plan) -> None:
        super().put_plan(thread, number, plan)
        self._write("mdap_run_values", thread, f"plan:{number}", plan.model_dump())

    def plan(self, thread: str, number: int) -> Plan:
        if (thread, number) not in self._plans:
            data = self._value(thread, f"plan:{number}")
            if data is not None:
                self._plans[thread, number] = Plan.model_validate(data)
        return super().plan(thread, number)

    def put_spent(self, thread: str, spent: Spent) -> None:
        self._write("mdap_run_values", thread, "spent", spent)

    def spent(self, thread: str) -> Spent:
        data = self._value(thread, "spent")
        return dict(data) if isinstance(data, Mapping) else {}

    def _value(self, thread: str, key: str) -> Any:
        self.flush()
        row = self._db.execute(
            "SELECT record FROM mdap_run_values WHERE thread_id = ? AND key = ?", (thread, key)
        ).fetchone()
        return ormsgpack.unpackb(row[0]) if row is not None else None

    def _write(self, table: str, thread: str, key: str, record: Mapping[str, Any]) -> None:
        self._pending.append((table, thread, key, ormsgpack.packb(record)))
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        db = self._db
        try:
            db.execute("BEGIN")
            try:
                for table in ("mdap_subtask_results", "mdap_run_values"):
                    mine = [row[1:] for row in rows if row[0] == table]
                    if mine:
                        db.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)", mine)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError:
            self._pending[:0] = rows  # keep them for the next flush (e.g. the file was busy)
            raise

    def clear(self, thread: str) -> None:
        super().clear(thread)
        self.flush()
        for table in ("mdap_subtask_results", "mdap_run_values"):
            self._db.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread,))

    def close(self) -> None:
        self.flush()
        self._db.close()


def _decode(record: Mapping[str, Any]) -> Done:
    if record.get("status") == "expanded":
        return Plan.model_validate(record["plan"])
    return SubtaskResult.from_record(record)


def _fingerprint(prefix: str, s: Subtask, dep_fps: list[str]) -> str:
    raw = "\x00".join([prefix, s.id, s.role, s.instruction, *dep_fps])
    return hashlib.sha1(raw.encode()).hexdigest()[:24]


def fingerprints(subtasks: list[Subtask], prefix: str) -> dict[str, str]:
    """The store keys of a validated DAG's subtasks (``prefix``: the fingerprint of the subtask it was split
    from, or ""): in plan order when dependencies come first, else in Kahn's order."""
    fps: dict[str, str] = {}
    for s in subtasks:
        try:
            dep_fps = [fps[d] for d in s.depends_on]
        except KeyError:
            break
        fps[s.id] = _fingerprint(prefix, s, dep_fps)
    else:
        return fps
    by_id = {s.id: s for s in subtasks}
    indegree = {s.id: len(s.depends_on) for s in subtasks}
    users: dict[str, list[str]] = {}
    for s in subtasks:
        for d in s.depends_on:
            users.setdefault(d, []).append(s.id)
    todo = [s.id for s in subtasks if not s.depends_on]
    fps = {}
    while todo:
        s = by_id[todo.pop()]
        fps[s.id] = _fingerprint(prefix, s, [fps[d] for d in s.depends_on])
        for u in users.get(s.id, ()):
            indegree[u] -= 1
            if indegree[u] == 0:
                todo.append(u)
    if len(fps) != len(subtasks):
        raise PlanError("the plan has a cycle; validate it with mdap.planners.validate_plan first")
    return fps
