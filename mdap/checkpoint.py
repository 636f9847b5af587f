"""Checkpoints of a chain run and its JSONL trace, written atomically so a killed run can resume."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ValidationError

from mdap.errors import CheckpointError

__all__ = ["Checkpoint", "TraceWriter"]

_VERSION = 1


class Checkpoint(BaseModel):
    """Everything needed to continue a run at ``next_step``.

    The counters are those of the report so far; ``trace_bytes`` is the length of the trace at the
    checkpoint (the trace is cut back to it on resume, so no step appears twice). ``run_id`` names the run
    on a pool: a resumed run keeps it, so the steps it redoes find their stored results.
    """

    version: int = _VERSION
    task: str
    next_step: int
    state: Any
    k: int | None = None
    calibration: dict[str, Any] | None = None
    counters: dict[str, Any]
    trace_bytes: int | None = None
    run_id: str | None = None

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves the previous checkpoint or this one, never half of one."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(self.model_dump_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, task: str) -> Checkpoint:
        """Read a checkpoint and check it belongs to ``task``.

        Raises:
            CheckpointError: missing, unreadable, of another version, or of another task.
        """
        if not path.exists():
            raise CheckpointError(f"nothing to resume: no checkpoint at {path}; run again without --resume")
        try:
            ckpt = cls.model_validate_json(path.read_bytes())
        except (OSError, ValidationError, ValueError) as err:
            raise CheckpointError(
                f"checkpoint {path} is unreadable ({type(err).__name__}); delete it and run without --resume"
            ) from err
        if ckpt.version != _VERSION:
            raise CheckpointError(f"checkpoint {path} has version {ckpt.version}, this mdap writes {_VERSION}")
        if ckpt.task != task:
            raise CheckpointError(
                f"checkpoint {path} is of task {ckpt.task!r}, not {task!r}; use another run directory"
            )
        return ckpt


class TraceWriter:
    """Appends one JSON line per decided step; can be cut back to a checkpoint's length on resume."""

    def __init__(self, path: Path, *, resume_bytes: int | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_bytes is None:
            self._f: IO[str] = open(path, "w", buffering=1 << 20)  # noqa: SIM115 -- held open for the run
            return
        try:
            size = path.stat().st_size
        except OSError as err:
            raise CheckpointError(f"cannot resume: trace {path} is missing ({err.strerror})") from err
        if size < resume_bytes:
            raise CheckpointError(
                f"cannot resume: trace {path} has {size} bytes but the checkpoint expects {resume_bytes}; "
                "it was truncated or replaced -- run again without --resume"
            )
        _check_tail(path, resume_bytes)
        with open(path, "r+b") as raw:
            raw.truncate(resume_bytes)
        self._f = open(path, "a", buffering=1 << 20)  # noqa: SIM115 -- held open for the run

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        self._f.write(json.dumps(record, separators=(",", ":")))
        self._f.write("\n")

    def sync(self) -> int:
        """Flush to the OS and return the trace length in bytes."""
        self._f.flush()
        return self._f.tell()

    def close(self) -> None:
        """Flush and close."""
        self._f.close()


def _check_tail(path: Path, length: int) -> None:
    """The last line before ``length`` must be a complete JSON object, or the trace is not ours."""
    if length == 0:
        return
    with open(path, "rb") as f:
        f.seek(max(0, length - 4096))
        tail = f.read(min(length, 4096))
    if not tail.endswith(b"\n"):
        raise CheckpointError(f"cannot resume: trace {path} does not end a line where the checkpoint says")
    last = tail[:-1].rsplit(b"\n", 1)[-1]
    try:
        json.loads(last)
    except ValueError as err:
        raise CheckpointError(f"cannot resume: trace {path} is unreadable at the checkpoint ({err})") from err
