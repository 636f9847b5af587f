"""Reliability diagnostics from a run's trace: per-step p, its spread, steps below 1/2, collision rate.

Each trace line (``mdap hanoi --trace``) holds a step's samples and its votes, the decided answer's first. Taking
the decided answer as right, a step contributes ``votes[0]`` right and ``votes[1:]`` wrong votes to a
:class:`~mdap.voters.Calibration`, which then gives the same figures a calibration run does.

A vote stops as soon as one answer leads by k, so a trace sees few samples per step and its per-step p is
coarse and biased towards the decided answer (optional stopping). For per-step p that decides whether voting
can work, draw a fixed number of samples per state (a calibration run, or ``mdap adapters eval``); the trace
still shows which steps were contested and whether their wrong samples agreed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mdap.errors import ConfigError
from mdap.jsontext import loads_json

from .calibration import Calibration

__all__ = ["read_trace", "trace_calibration"]


def read_trace(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream the records of an executor trace (JSONL) with their line numbers, blank lines skipped.

    Raises:
        ConfigError: the file cannot be read, or a line is not JSON or lacks one of ``required``.
    """
    try:
        fh = Path(path).open()  # noqa: SIM115 -- closed by the `with` below; streamed, traces can be long
    except OSError as err:
        raise ConfigError(f"cannot read the trace {path}: {err}") from None
    with fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = loads_json(line)
                for key in required:
                    record[key]
            except (ValueError, KeyError, TypeError):
                raise ConfigError(
                    f"{path}:{number} is not a trace record (needs {', '.join(required)}); "
                    "write traces with `mdap hanoi --trace FILE`"
                ) from None
            yield number, record


def trace_calibration(path: Path) -> Calibration:
    """A :class:`Calibration` of every decided step in the JSONL trace at ``path``.

    Raises:
        ConfigError: the file cannot be read, or a line lacks ``samples`` / ``votes``.
    """
    cal = Calibration()
    for number, record in read_trace(path, ("samples", "votes")):
        try:
            votes = [int(v) for v in record["votes"]]
            samples = int(record["samples"])
            flagged = sum(int(c) for c in (record.get("red_flags") or {}).values())
        except (ValueError, TypeError, AttributeError):
            raise ConfigError(
                f"{path}:{number} is not a trace record with samples and votes; write traces with --trace"
            ) from None
        if votes:
            cal.add_counts(votes[0], votes[1:], samples, flagged)
        else:
            cal.add_counts(0, [], samples, flagged)
    return cal
