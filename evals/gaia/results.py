"""GAIA run outputs: per-question results (JSONL), the leaderboard submission (JSONL), the summary by level.

``results.jsonl`` is the run's record: one line per finished question, appended as each finishes, so a killed
run resumes by skipping the task ids it holds. ``submission.jsonl`` (``task_id``, ``model_answer``,
``reasoning_trace``: the format the GAIA leaderboard takes) and ``summary.json`` are rewritten from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, computed_field

from mdap._outputs import write_atomic, writing
from mdap.errors import ConfigError
from mdap.report import UsageModel
from mdap.usage import Usage

__all__ = [
    "RESULTS_FILE",
    "SUBMISSION_FILE",
    "SUMMARY_FILE",
    "GaiaResult",
    "GaiaSummary",
    "LevelScore",
    "append_result",
    "format_table",
    "read_results",
    "summarize",
    "write_outputs",
]

RESULTS_FILE = "results.jsonl"
SUBMISSION_FILE = "submission.jsonl"
SUMMARY_FILE = "summary.json"


class GaiaResult(UsageModel):
    """What happened on one question (a line of ``results.jsonl``; its usage's counters are top-level keys)."""

    task_id: str
    level: int
    question: str
    file_name: str = ""
    model_answer: str = Field(description="the extracted final answer; '' when the pipeline gave none")
    ground_truth: str
    correct: bool | None = Field(description="the official score; None when the ground truth is hidden ('?')")
    status: str = Field(description="the pipeline's status: ok, partial or failed")
    error: str | None = None
    reasoning_trace: str = ""
    plan_notes: str = ""
    subtasks: int = 0
    tool_calls: int = 0
    seconds: float = 0.0


class LevelScore(BaseModel):
    """The score of one level (or of all levels: ``level`` None)."""

    level: int | None
    questions: int = Field(description="questions with a result")
    answered: int = Field(description="questions with a non-empty final answer")
    scored: int = Field(description="questions with a known ground truth")
    correct: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def accuracy(self) -> float | None:
        """correct / scored, or None when nothing is scored."""
        return self.correct / self.scored if self.scored else None


class GaiaSummary(UsageModel):
    """The summary of a run: scores by level and in total, and what the run cost (``usage``, summed over the
    questions; its counters are top-level keys of ``summary.json``)."""

    split: str
    model: str
    levels: list[LevelScore]
    total: LevelScore
    accuracy: float | None = Field(description="total correct / scored")
    skipped: int = Field(0, description="questions skipped because an earlier run finished them (resume)")
    errors: dict[str, str] = Field(
        default_factory=dict, description="task id -> error for questions not recorded (transport errors)"
    )
    wall_seconds: float = 0.0
    out_dir: str = ""


def _score(level: int | None, rows: Sequence[GaiaResult]) -> LevelScore:
    return LevelScore(
        level=level,
        questions=len(rows),
        answered=sum(1 for r in rows if r.model_answer.strip()),
        scored=sum(1 for r in rows if r.correct is not None),
        correct=sum(1 for r in rows if r.correct),
    )


def summarize(results: Iterable[GaiaResult], *, split: str, model: str, **extra: Any) -> GaiaSummary:
    """Scores by level (only levels with results) and in total; ``extra`` fills the other summary fields."""
    rows = list(results)
    total = _score(None, rows)
    return GaiaSummary(
        split=split,
        model=model,
        levels=[_score(level, [r for r in rows if r.level == level]) for level in sorted({r.level for r in rows})],
        total=total,
        accuracy=total.accuracy,
        usage=sum((r.usage for r in rows), Usage.zero()),
        **extra,
    )


def read_results(path: Path) -> list[GaiaResult]:
    """The results recorded in ``path`` (none if it does not exist).

    A last line cut off mid-write (a killed run) is dropped from the file, so that question runs again; a valid
    last line without its newline gets one, so the next result starts a line of its own.

    Raises:
        ConfigError: any other line is not a valid result (the message names the file, line and field).
    """
    if not path.is_file():
        return []
    raw = path.read_bytes()
    if raw.endswith(b"\n"):
        body, tail = raw[:-1], b""
    else:
        body, _, tail = raw.rpartition(b"\n")
    lines = body.split(b"\n") if body else []
    out: list[GaiaResult] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(GaiaResult.model_validate_json(line))
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(map(str, first["loc"])) or "line"
            raise ConfigError(
                f"{path} line {number}, field {field!r}: {first['msg']}; fix or delete the line to run it again"
            ) from None
    if tail.strip():  # the last line has no newline: complete (add one) or cut off by a kill (drop it)
        try:
            out.append(GaiaResult.model_validate_json(tail))
        except ValidationError:
            path.write_bytes(raw[: len(raw) - len(tail)])
        else:
            with path.open("ab") as fh:
                fh.write(b"\n")
    return out


def append_result(path: Path, result: GaiaResult) -> None:
    """Append ``result`` as one line and flush it to disk.

    Raises:
        OutputError: it could not be written (a full disk: a line cut short is dropped on resume).
    """
    with writing(path), path.open("a", encoding="utf-8") as fh:
        fh.write(result.model_dump_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_outputs(out_dir: Path, results: Sequence[GaiaResult], summary: GaiaSummary) -> None:
    """Rewrite ``submission.jsonl`` (in results order) and ``summary.json`` in ``out_dir``, each atomically.

    Raises:
        OutputError: a file could not be written (the previous version stays).
    """
    lines = [
        json.dumps({"task_id": r.task_id, "model_answer": r.model_answer, "reasoning_trace": r.reasoning_trace})
        for r in results
    ]
    write_atomic(out_dir / SUBMISSION_FILE, "".join(line + "\n" for line in lines))
    write_atomic(out_dir / SUMMARY_FILE, summary.model_dump_json(indent=2) + "\n")


def format_table(summary: GaiaSummary) -> str:
    """The summary as a text table: one row per level, then the total."""
    header = f"{'level':<7}{'questions':>10}{'answered':>10}{'correct':>9}{'accuracy':>10}"
    rows = [header, "-" * len(header)]
    for s in [*summary.levels, summary.total]:
        name = "all" if s.level is None else str(s.level)
        acc = "-" if s.accuracy is None else f"{s.accuracy:.1%}"
        rows.append(f"{name:<7}{s.questions:>10}{s.answered:>10}{s.correct:>9}{acc:>10}")
    return "\n".join(rows)
