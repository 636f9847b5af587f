"""Checkpoints of a chain run and its JSONL trace, and the lock that keeps one coordinator per run.

A checkpoint is written atomically (a unique temp file, fsync, rename), so a killed run leaves the previous
checkpoint or the new one, never half of one. On resume nothing is guessed: the checkpoint is validated field
by field, and the trace must be the very file the checkpoint wrote, ending at the recorded offset with the
record of the step before ``next_step``; only then is it cut back to that offset.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mdap.errors import CheckpointError
from mdap.jsontext import loads_json

__all__ = ["Checkpoint", "Counters", "RunInUse", "RunLock", "TraceWriter", "lock_path", "same_file"]

_VERSION = 2
_START_OVER = "rerun without --resume to start over"


class RunInUse(CheckpointError):
    """Another live process (a coordinator of the same run) holds the run's lock.

    Attributes:
        pid: the holder's process id, when it could be read from the lock file.
    """

    def __init__(self, message: str, pid: int | None) -> None:
        self.pid = pid
        super().__init__(message)


def lock_path(checkpoint: Path) -> Path:
    """The lock file of a checkpoint: ``run/checkpoint.json`` -> ``run/checkpoint.json.lock``."""
    return checkpoint.with_name(checkpoint.name + ".lock")


class RunLock:
    """An exclusive ``flock`` on a lock file, held from :meth:`acquire` until :meth:`release` or process death.

    The kernel drops the lock when its holder dies (even by SIGKILL), so there is never a stale lock to clean
    up by hand; the holder's pid is written inside only to name it in the error of the next comer.

    Args:
        path: the lock file (created if missing; never deleted, so every process locks the same inode).
        what: what is locked, for the message (e.g. ``"run directory rd"``).
        way_out: what the second comer can do instead of waiting (e.g. ``"use another --run-dir"``).
    """

    def __init__(self, path: Path, *, what: str, way_out: str) -> None:
        self.path = path
        self.what = what
        self.way_out = way_out
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock without waiting.

        Raises:
            RunInUse: another process holds it (the message names its pid).
            CheckpointError: the lock file cannot be created or locked (a read-only directory, no flock).
        """
        if self._fd is not None:
            raise CheckpointError(f"{self.what}: this lock is already held by this process")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CheckpointError(f"cannot lock {self.what}: {self.path}: {err.strerror or err}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            by = f"pid {pid}" if pid is not None else "another process"
            raise RunInUse(
                f"{self.what} is in use by {by} (another mdap coordinator); wait for it or {self.way_out}", pid
            ) from None
        except OSError as err:
            os.close(fd)
            raise CheckpointError(f"cannot lock {self.what}: {self.path}: {err.strerror or err}") from err
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: let go of the lock (and the file, so the disk can be unmounted), then say so
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the file stays, for the next holder)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release()


def _holder(fd: int) -> int | None:
    """The pid written in a held lock file (the holder writes it right after locking: wait for it briefly)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if re.fullmatch(r"[0-9]{1,10}", text):
            return int(text)
        time.sleep(0.005)
    return None


def same_file(recorded: str, path: Path) -> bool:
    """Whether ``path`` is the file recorded (as an absolute path) in a checkpoint."""
    if Path(recorded) == path.resolve():
        return True
    try:
        return os.path.samefile(recorded, path)
    except OSError:
        return False


NonNegative = Annotated[int, Field(ge=0)]


class Counters(BaseModel):
    """The report's counters at a checkpoint."""

    model_config = ConfigDict(strict=True, extra="forbid")

    samples: NonNegative = 0
    red_flags: dict[str, NonNegative] = Field(default_factory=dict)
    completion_tokens: NonNegative = 0
    prompt_tokens: NonNegative = 0
    cost: float | None = Field(None, ge=0.0, allow_inf_nan=False)
    contested_steps: NonNegative = 0
    errors: NonNegative = 0
    first_error_step: NonNegative | None = None
    error_messages: list[str] = Field(default_factory=list)
    wall_seconds: float = Field(0.0, ge=0.0, allow_inf_nan=False)


class Checkpoint(BaseModel):
    """Everything needed to continue a run at ``next_step``.

    ``trace`` is the absolute path of the trace the run writes, ``trace_bytes`` its length at the checkpoint
    and ``trace_tail`` the SHA-256 of its last record (the step ``next_step - 1``): a resume continues that
    trace only, after checking the record. ``run_id`` names the run on a pool: a resumed run keeps it, so the
    steps it redoes find their stored results.
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    version: int = _VERSION
    task: str = Field(min_length=1)
    next_step: NonNegative
    state: Any
    k: Annotated[int, Field(ge=1)] | None = None
    calibration: dict[str, Any] | None = None
    counters: Counters
    trace: str | None = None
    trace_bytes: NonNegative | None = None
    trace_tail: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    run_id: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Checkpoint:
        n, c = self.next_step, self.counters
        if c.errors > n or c.contested_steps > n:
            raise ValueError(f"counts more errors or contested steps than the {n} steps done")
        if (c.first_error_step is None) != (c.errors == 0) or (c.first_error_step or 0) >= max(n, 1):
            raise ValueError(f"first_error_step {c.first_error_step} does not fit {c.errors} errors in {n} steps")
        if (self.trace is None) != (self.trace_bytes is None):
            raise ValueError("trace and trace_bytes must be given together")
        if self.trace is not None:
            if not Path(self.trace).is_absolute():
                raise ValueError(f"trace {self.trace!r} is not an absolute path")
            if (n == 0) != (self.trace_bytes == 0) or (n == 0) != (self.trace_tail is None):
                raise ValueError(f"trace_bytes {self.trace_bytes} does not fit {n} traced steps")
        return self

    def save(self, path: Path) -> None:
        """Write atomically: a crash (or a failed write) leaves the previous checkpoint or this one intact.

        The temp file has a unique name, so two writers never trip over each other's temp file.
        """
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.model_dump_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable (not every filesystem can)
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    @classmethod
    def load(cls, path: Path, task: str, steps: int) -> Checkpoint:
        """Read a checkpoint and check it is whole, consistent and of ``task`` (a chain of ``steps`` steps).

        Raises:
            CheckpointError: missing, unreadable, not a checkpoint, of another version or task, or with a
                field out of range; the message names what is wrong and says to rerun without resume.
        """
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"nothing to resume: no checkpoint at {path}; run again without --resume") from None
        except OSError as err:
            raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from err
        try:
            data = loads_json(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {path} is unreadable (not UTF-8 JSON: {err}); {_START_OVER}") from None
        if not isinstance(data, dict) or "version" not in data or "task" not in data:
            raise CheckpointError(f"{path} is unreadable as a mdap checkpoint (no version or task); {_START_OVER}")
        if data["version"] != _VERSION:
            raise CheckpointError(
                f"checkpoint {path} has version {data['version']!r}, this mdap reads {_VERSION}; {_START_OVER}"
            )
        if data["task"] != task:
            raise CheckpointError(
                f"checkpoint {path} is of task {data['task']!r}, not {task!r}; use another run directory"
            )
        try:
            ckpt = cls.model_validate(data)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'checkpoint'}: {e['msg']}" for e in err.errors(include_url=False)
            )
            raise CheckpointError(f"checkpoint {path} is invalid: {problems}; {_START_OVER}") from None
        if ckpt.next_step > steps:
            raise CheckpointError(
                f"checkpoint {path} is invalid: next_step {ckpt.next_step} is past the {steps} steps of {task}; "
                f"{_START_OVER}"
            )
        return ckpt


class TraceWriter:
    """Appends one JSON line per decided step to a trace it holds an exclusive lock on.

    Args:
        path: the trace file. A new run empties it; a resumed run continues it.
        resume: the checkpoint to continue from: the trace must be the file it recorded, at least
            ``trace_bytes`` long, with the record of step ``next_step - 1`` (the one the checkpoint hashed)
            ending exactly there. Only then is it cut back to ``trace_bytes``.

    Raises:
        RunInUse: another process is writing this trace.
        CheckpointError: the trace is not the one the checkpoint wrote, or not as it left it (nothing is cut).
    """

    def __init__(self, path: Path, *, resume: Checkpoint | None = None) -> None:
        self.path = path
        self._last = ""
        if resume is not None and (resume.trace is None or not same_file(resume.trace, path)):
            raise CheckpointError(
                f"cannot resume: the checkpoint wrote the trace {resume.trace}, not {path}; {_START_OVER}, "
                f"or pass the trace this checkpoint wrote: {resume.trace}"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | (0 if resume else os.O_CREAT))
        except OSError as err:
            missing = " is missing" if isinstance(err, FileNotFoundError) else f": {err.strerror or err}"
            raise CheckpointError(f"cannot {'resume' if resume else 'write'}: trace {path}{missing}") from err
        try:
            self._regular = stat.S_ISREG(os.fstat(fd).st_mode)  # not a device such as /dev/null: written as is
            try:
                if self._regular:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunInUse(
                    f"trace {path} is being written by another mdap run; wait for it or write the trace elsewhere",
                    None,
                ) from None
            if resume is not None:
                self._last = _check_tail(path, resume)
            if self._regular:
                os.ftruncate(fd, resume.trace_bytes or 0 if resume is not None else 0)
            self._f: IO[str] = open(fd, "a", buffering=1 << 20, encoding="utf-8")  # noqa: SIM115 -- held for the run
        except BaseException:
            os.close(fd)
            raise

    @property
    def regular(self) -> bool:
        """Whether the trace is a regular file (a checkpoint can record and later verify it), not a device."""
        return self._regular

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        line = json.dumps(record, separators=(",", ":"))
        self._f.write(line)
        self._f.write("\n")
        self._last = line

    def sync(self) -> int:
        """Flush to the disk and return the trace length in bytes (0 for a device or a pipe)."""
        self._f.flush()
        if not self._regular:
            return 0  # a device or a pipe: no length to record
        os.fsync(self._f.fileno())
        return self._f.tell()

    def tail(self) -> str | None:
        """SHA-256 (hex) of the last record written or continued from; None if the trace is empty."""
        return hashlib.sha256(self._last.encode()).hexdigest() if self._last else None

    def close(self) -> None:
        """Flush, close and release the trace."""
        self._f.close()


def _check_tail(path: Path, ckpt: Checkpoint) -> str:
    """Check the trace ends, at the checkpoint's offset, with the record the checkpoint hashed; return it."""
    length = ckpt.trace_bytes or 0
    size = path.stat().st_size
    if size < length:
        raise CheckpointError(
            f"cannot resume: trace {path} has {size} bytes but the checkpoint expects {length}; "
            f"it was truncated or replaced -- {_START_OVER}"
        )
    if length == 0:
        return ""
    with open(path, "rb") as f:
        f.seek(length - 1)
        if f.read(1) != b"\n":
            raise CheckpointError(
                f"cannot resume: trace {path} does not end a record at byte {length} where the checkpoint "
                f"says; {_START_OVER}"
            )
        start, window = length - 1, 4096
        while True:
            lo = max(0, start - window)
            f.seek(lo)
            buf = f.read(start - lo)
            cut = buf.rfind(b"\n")
            if cut >= 0 or lo == 0:
                line = buf[cut + 1 :]
                break
            window *= 2
    want = ckpt.next_step - 1
    try:
        step = loads_json(line.decode("utf-8")).get("step")
    except (UnicodeDecodeError, ValueError, AttributeError):
        step = "unreadable"
    if step != want:
        raise CheckpointError(
            f"cannot resume: the record of trace {path} before byte {length} is step {step}, but the checkpoint "
            f"continues after step {want} (the checkpoint or the trace was edited); {_START_OVER}"
        )
    if hashlib.sha256(line).hexdigest() != ckpt.trace_tail:
        raise CheckpointError(
            f"cannot resume: the record of step {want} in trace {path} is not the one the checkpoint wrote "
            f"(the trace was edited or replaced); {_START_OVER}"
        )
    return line.decode("utf-8")
