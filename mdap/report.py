"""RunReport: what a run did, as a pydantic model written to JSON with ``--report``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mdap._outputs import write_atomic
from mdap._redact import redact_data

__all__ = ["ModuleStats", "RunReport"]


class ModuleStats(BaseModel):
    """What one module of a pipeline (the planner, a worker role) spent in a run."""

    steps: int = Field(default=0, description="subtasks run (or plans made, for the planner)")
    samples: int = Field(default=0, description="samples drawn, red-flagged included")
    red_flags: dict[str, int] = Field(default_factory=dict, description="red-flagged samples by kind")
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cost: float = Field(default=0.0, description="cost in the backend's unit (0 for local models)")
    model_seconds: float = Field(default=0.0, description="summed latency of the module's model requests")


class RunReport(BaseModel):
    """The outcome and cost of one run of a chain of microsteps."""

    task: str = Field(description="fingerprint of the task, e.g. 'hanoi:20'")
    total_steps: int = Field(description="steps the task has")
    steps: int = Field(description="steps decided")
    completed: bool = Field(description="every step was decided")
    errors: int | None = Field(description="decided answers the verifier rejected (None: no verifier)")
    first_error_step: int | None = Field(default=None, description="index of the first rejected step")
    error_messages: list[str] = Field(default_factory=list, description="the first few verifier messages")
    samples: int = Field(description="samples drawn, red-flagged included (calibration excluded)")
    red_flags: dict[str, int] = Field(default_factory=dict, description="red-flagged samples by kind")
    contested_steps: int = Field(default=0, description="steps where some valid vote went to another answer")
    completion_tokens: int = 0
    prompt_tokens: int = 0
    wall_seconds: float = Field(description="wall time of the run, summed over resumed sessions")
    k: int | None = Field(default=None, description="the vote margin used")
    calibration: dict[str, Any] | None = Field(default=None, description="calibration summary when k was auto")
    expected_samples_per_step: float | None = Field(default=None, description="theory, for the calibrated p")
    resumed_from: int | None = Field(default=None, description="step the last session resumed at")
    cost: float = Field(default=0.0, description="cost in the backends' unit (0 for local models)")
    model_seconds: float = Field(default=0.0, description="summed latency of model requests")
    modules: dict[str, ModuleStats] = Field(default_factory=dict, description="per module: planner, each role")
    failure: str | None = Field(default=None, description="why the run stopped early (e.g. VoteFailed)")
    failure_tally: dict[str, int] | None = Field(default=None, description="the vote tally of a failed step")

    @property
    def mean_samples_per_step(self) -> float:
        """Samples per decided step."""
        return self.samples / self.steps if self.steps else 0.0

    @property
    def ok(self) -> bool:
        """Completed with no verifier error."""
        return self.completed and not self.errors

    def summary_dict(self) -> dict[str, Any]:
        """The report as a JSON-able dict, with derived rates added."""
        data = self.model_dump()
        data["mean_samples_per_step"] = self.mean_samples_per_step
        secs = self.wall_seconds or 1e-9
        data["steps_per_second"] = self.steps / secs
        data["samples_per_second"] = self.samples / secs
        redacted: dict[str, Any] = redact_data(data)  # a failure message may name a model server URL with its key
        return redacted

    def write(self, path: str | Path) -> None:
        """Write the report (with derived rates) as indented JSON, atomically (never half a file).

        Raises:
            OutputError: it could not be written (the message names ``path``; a full disk says so).
        """
        import json

        write_atomic(path, json.dumps(self.summary_dict(), indent=2) + "\n")
