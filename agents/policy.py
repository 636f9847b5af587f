"""CoordinatorPolicy: how the coordinator runs a plan's subtasks (concurrency, timeouts, retries, failures)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CoordinatorPolicy"]


class CoordinatorPolicy(BaseModel):
    """How the coordinator runs subtasks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_concurrency: Annotated[int, Field(ge=1, description="subtasks running at once (enforced)")] = 8
    subtask_timeout_s: Annotated[float | None, Field(gt=0, description="seconds per attempt; None = none")] = 300.0
    retries: Annotated[int, Field(ge=0, description="extra attempts of a failed subtask")] = 2
    backoff_s: Annotated[float, Field(ge=0, description="wait before the first retry")] = 0.5
    backoff_factor: Annotated[float, Field(ge=1, description="each retry waits this much longer")] = 2.0
    max_backoff_s: Annotated[float, Field(ge=0, description="longest wait between retries")] = 30.0
    max_replans: Annotated[int, Field(ge=0, description="replans after subtasks fail for good (0 = never)")] = 1
    on_failure: Annotated[
        Literal["propagate", "halt"],
        Field(
            description="when no replan is left: 'propagate' runs dependents with the failure as context, "
            "'halt' stops the run"
        ),
    ] = "propagate"
    max_pending: Annotated[
        int, Field(ge=1, description="most subtasks of a plan, splits included (task explosion guard)")
    ] = 100_000
    artifact_chars: Annotated[int, Field(ge=16, description="dependency results are cut to this length")] = 2000
