"""Where subtask results are persisted as they complete, so a killed run resumes without redoing them.

Results are keyed by (thread id, subtask fingerprint); the fingerprint covers the subtask's id, role,
instruction and, recursively, its dependencies, so a replanned subtask that changed is never mistaken for
the old one. The SQLite store group-commits: every result is written when it completes and committed at the
end of the event-loop iteration, so results finishing together share one commit (a commit costs ~60 us here,
too much to pay for each of 10,000 zero-latency subtasks).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import ormsgpack  # a dependency of langgraph's checkpointers: 10x faster than json.dumps for these records

from mdap.errors import CheckpointError

__all__ = ["MemoryStore", "ResultStore", "SqliteStore"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


class ResultStore:
    """In-memory base: the interface the coordinator uses."""

    def load(self, thread: str) -> dict[str, dict[str, Any]]:
        """Every record of ``thread`` by fingerprint."""
        return {}

    def put(self, thread: str, fingerprint: str, record: dict[str, Any]) -> None:
        """Persist one record (durable by the end of this event-loop iteration)."""

    def flush(self) -> None:
        """Make every record put so far durable now."""

    def clear(self, thread: str) -> None:
        """Forget every record of ``thread``."""

    def close(self) -> None:
        """Flush and release resources."""


class MemoryStore(ResultStore):
    """Keeps records in a dict (no resume across processes)."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, dict[str, Any]]] = {}

    def load(self, thread: str) -> dict[str, dict[str, Any]]:
        return dict(self._data.get(thread, {}))

    def put(self, thread: str, fingerprint: str, record: dict[str, Any]) -> None:
        self._data.setdefault(thread, {})[fingerprint] = record

    def clear(self, thread: str) -> None:
        self._data.pop(thread, None)


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
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS mdap_subtask_results ("
            "thread_id TEXT NOT NULL, fingerprint TEXT NOT NULL, record BLOB NOT NULL, "
            "PRIMARY KEY (thread_id, fingerprint))"
        )
        self._pending: list[tuple[str, str, bytes]] = []
        self._scheduled = False

    def load(self, thread: str) -> dict[str, dict[str, Any]]:
        rows = self._db.execute(
            "SELECT fingerprint, record FROM mdap_subtask_results WHERE thread_id = ?", (thread,)
        ).fetchall()
        return {fp: ormsgpack.unpackb(rec) for fp, rec in rows}

    def put(self, thread: str, fingerprint: str, record: dict[str, Any]) -> None:
        self._pending.append((thread, fingerprint, ormsgpack.packb(record)))
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
                db.executemany("INSERT OR REPLACE INTO mdap_subtask_results VALUES (?, ?, ?)", rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError:
            self._pending[:0] = rows  # keep them for the next flush (e.g. the file was busy)
            raise

    def clear(self, thread: str) -> None:
        self.flush()
        self._db.execute("DELETE FROM mdap_subtask_results WHERE thread_id = ?", (thread,))

    def close(self) -> None:
        self.flush()
        self._db.close()
