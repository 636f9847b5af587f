"""RunReport: what a run did, as a pydantic model written to JSON with ``--report``; its usage is flat in JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from mdap._outputs import write_atomic
from mdap._redact import redact_data
from mdap.usage import FIELDS, Usage

__all__ = ["MAX_ERROR_MESSAGES", "ModuleStats", "RunReport", "UsageModel", "combine_reports"]

MAX_ERROR_MESSAGES = 10
"""Verifier messages a chain's report keeps (the first ones)."""


class UsageModel(BaseModel):
    """A pydantic model with a :class:`~mdap.usage.Usage` field, whose counters read and write as top-level keys.

    ``usage`` is one value in code (add them with ``+``) and flat in JSON (``samples``, ``red_flags``,
    ``completion_tokens``, ``prompt_tokens``, ``cost``, ``model_seconds`` where ``usage`` would be), so report
    files, results files and the pool's wire keep their readable keys. Built with either
    ``usage=Usage(...)`` or the flat keys.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    usage: Usage = Field(default_factory=Usage.zero, description="what the model work cost")

    @model_validator(mode="before")
    @classmethod
    def _fold_usage(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        flat = FIELDS.intersection(data)
        usage = data.get("usage")
        if not flat and (usage is None or isinstance(usage, Usage)):
            return data
        rest = {k: v for k, v in data.items() if k not in FIELDS}
        if isinstance(usage, Mapping):
            usage = Usage.from_json(usage)
        if flat:
            extra = Usage.from_json({k: data[k] for k in flat})
            usage = extra if usage is None else usage + extra
        rest["usage"] = usage
        return rest

    @model_serializer(mode="wrap")
    def _flat_usage(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if "usage" not in data:
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key == "usage":
                out.update(self.usage.to_json())
            else:
                out[key] = value
        return out


class ModuleStats(UsageModel):
    """What one module of a pipeline (the planner, a worker role) spent in a run."""

    steps: int = Field(default=0, description="subtasks run (or plans made, for the planner)")


class RunReport(UsageModel):
    """The outcome and cost of a run: a chain of microsteps (``mdap hanoi``) or a pipeline (``mdap run``).

    Each field means one thing for both kinds; the fields of one kind are None for the other (a chain has no
    subtasks, a pipeline no verifier).
    """

    task: str = Field(description="fingerprint of the task, e.g. 'hanoi:20' or 'pipeline:<name>'")
    total_steps: int = Field(description="steps (chain) or subtasks (pipeline) the task has")
    steps: int = Field(description="steps decided (chain) or subtasks that succeeded (pipeline)")
    completed: bool = Field(description="every step was decided / every subtask succeeded")
    verifier_errors: int | None = Field(
        default=None, description="chain: decided answers the verifier rejected (None: no verifier, or a pipeline)"
    )
    first_error_step: int | None = Field(default=None, description="chain: index of the first rejected step")
    error_messages: list[str] = Field(default_factory=list, description="chain: the first few verifier messages")
    failed_subtasks: int | None = Field(default=None, description="pipeline: subtasks that failed (None for a chain)")
    contested_steps: int = Field(default=0, description="steps where some valid vote went to another answer")
    wall_seconds: float = Field(description="wall time of the run, summed over resumed sessions")
    k: int | None = Field(default=None, description="the vote margin used")
    calibration: dict[str, Any] | None = Field(default=None, description="calibration summary when k was auto")
    expected_samples_per_step: float | None = Field(default=None, description="theory, for the calibrated p")
    resumed_from: int | None = Field(default=None, description="chain: the step the last session resumed at")
    cached_subtasks: int | None = Field(
        default=None, description="pipeline, resumed: subtasks whose results came from the store, not a worker"
    )
    modules: dict[str, ModuleStats] = Field(default_factory=dict, description="per module: planner, each role")
    failure: str | None = Field(default=None, description="why the run stopped early (e.g. VoteFailed)")
    failure_tally: dict[str, int] | None = Field(default=None, description="the vote tally of a failed step")

    @property
    def mean_samples_per_step(self) -> float:
        """Samples per decided step."""
        return self.usage.samples / self.steps if self.steps else 0.0

    @property
    def ok(self) -> bool:
        """Completed with no verifier error (and no failed subtask)."""
        return self.completed and not self.verifier_errors and not self.failed_subtasks

    def summary_dict(self) -> dict[str, Any]:
        """The report as a JSON-able dict, with derived rates added."""
        data = self.model_dump()
        data["mean_samples_per_step"] = self.mean_samples_per_step
        secs = self.wall_seconds or 1e-9
        data["steps_per_second"] = self.steps / secs
        data["samples_per_second"] = self.usage.samples / secs
        redacted: dict[str, Any] = redact_data(data)  # a failure message may name a model server URL with its key
        return redacted

    def write(self, path: str | Path) -> None:
        """Write the report (with derived rates) as indented JSON, atomically (never half a file).

        Raises:
            OutputError: it could not be written (the message names ``path``; a full disk says so).
        """
        import json

        write_atomic(path, json.dumps(self.summary_dict(), indent=2) + "\n")


def combine_reports(reports: Sequence[RunReport], wall_seconds: float) -> RunReport:
    """One report for runs made at the same time: counts summed, ``wall_seconds`` the batch's, each run's
    figures under ``modules["run<i>"]``, errors and failures prefixed with their run."""
    first = reports[0]
    failures = [f"run {i}: {r.failure}" for i, r in enumerate(reports) if r.failure]
    failed = next((r for r in reports if r.failure_tally), None)
    rejected = [r.verifier_errors for r in reports if r.verifier_errors is not None]
    ks = {r.k for r in reports}
    expected = {r.expected_samples_per_step for r in reports}
    usage = Usage.zero()
    for r in reports:
        usage += r.usage
    return RunReport(
        task=first.task if all(r.task == first.task for r in reports) else ",".join(r.task for r in reports),
        total_steps=sum(r.total_steps for r in reports),
        steps=sum(r.steps for r in reports),
        completed=all(r.completed for r in reports),
        verifier_errors=sum(rejected) if rejected else None,
        first_error_step=next((r.first_error_step for r in reports if r.first_error_step is not None), None),
        error_messages=[f"run {i}: {m}" for i, r in enumerate(reports) for m in r.error_messages][:MAX_ERROR_MESSAGES],
        usage=usage,
        contested_steps=sum(r.contested_steps for r in reports),
        wall_seconds=wall_seconds,
        k=ks.pop() if len(ks) == 1 else None,
        calibration=first.calibration,
        expected_samples_per_step=expected.pop() if len(expected) == 1 else None,
        modules={f"run{i}": ModuleStats(steps=r.steps, usage=r.usage) for i, r in enumerate(reports)},
        failure="; ".join(failures) or None,
        failure_tally=failed.failure_tally if failed else None,
    )
