"""The mdap exception tree.

Every error mdap raises on purpose derives from :class:`MdapError`. The children branch by *who handles
them*::

    MdapError
    ├── ConfigError      bad user input: CLI flags, config files, arguments (fix the input)
    │   └── SandboxError the sandbox cannot run model-written code here (install bubblewrap, or opt out)
    ├── PlanError        a planner could not produce a valid plan (fix the planner/model or the task)
    ├── RedFlag          a sample shows signs of confusion; internal to voting (the voter discards it)
    ├── VoteFailed       a step could not be decided within its sample cap (raise k/cap or improve the model)
    ├── ModelError       transport, timeout, server down (check the server; retried where safe)
    ├── PoolError        a worker pool failed to run a step (check the pool/Redis)
    ├── SubtaskFailed    a pipeline worker could not finish its subtask (retried, then replanned by the coordinator)
    ├── ToolError        a worker tool refused or failed a call (the worker shows the message to the model)
    ├── CheckpointError  a trace or checkpoint cannot be read or resumed (delete it or rerun without resume)
    └── OutputError      an output (report, trace, checkpoint, results) cannot be written: disk full, read-only

Messages say what was wrong and what to do about it. Exceptions never log in their constructor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from mdap.usage import Usage

__all__ = [
    "CheckpointError",
    "ConfigError",
    "MdapError",
    "ModelError",
    "OutputError",
    "PlanError",
    "PoolError",
    "RedFlag",
    "SandboxError",
    "SubtaskFailed",
    "ToolError",
    "VoteFailed",
    "invalid_settings",
]


class MdapError(Exception):
    """Root of every error mdap raises on purpose."""


class ConfigError(MdapError, ValueError):
    """Bad user input: a flag, a config value or an argument is invalid."""


class SandboxError(ConfigError):
    """The sandbox cannot run model-written code here (bubblewrap missing or unable to make its namespaces)."""


class PlanError(MdapError):
    """A planner could not produce a valid plan.

    Args:
        message: what is wrong.
        problems: each problem found, when validation found several (all are reported at once); default: the
            message alone.
    """

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


class RedFlag(MdapError):
    """A sample shows a sign of confusion (too long, unparseable) and must be discarded.

    Args:
        kind: short name of the flag, used as the key in red-flag counts (e.g. ``"too_long"``, ``"parse"``).
        detail: what exactly was wrong with the sample.
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


class VoteFailed(MdapError):
    """A step could not be decided: the sample cap was reached before any answer led by the margin.

    Attributes:
        tally: votes per canonical answer (as text) when the vote gave up.
        red_flags: red-flag counts by kind for the step.
        samples: samples drawn for the step, red-flagged ones included.
        step: index of the step in its chain, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        tally: Mapping[str, int],
        red_flags: Mapping[str, int],
        samples: int,
        step: int | None = None,
    ) -> None:
        self.tally = dict(tally)
        self.red_flags = dict(red_flags)
        self.samples = samples
        self.step = step
        super().__init__(message)

    @property
    def usage(self) -> Usage:
        """The samples and red flags the failed vote spent (a failed step's work still counts)."""
        return Usage(self.samples, self.red_flags)

    def with_step(self, step: int) -> VoteFailed:
        """Return a copy of this error that names the chain step it happened at."""
        return VoteFailed(
            f"step {step}: {self}",
            tally=self.tally,
            red_flags=self.red_flags,
            samples=self.samples,
            step=step,
        )


class ModelError(MdapError):
    """A model backend failed: connection refused, timeout, server error, unknown model or adapter."""


class PoolError(MdapError):
    """A worker pool could not run a step."""


class SubtaskFailed(MdapError):
    """A pipeline worker could not finish its subtask (e.g. its tool loop ran out of rounds)."""


class ToolError(MdapError):
    """A worker tool refused a call (a path outside the workspace, bad arguments) or failed (a timeout)."""


class CheckpointError(MdapError):
    """A trace or checkpoint file is missing, unreadable or inconsistent with the run being resumed."""


class OutputError(MdapError):
    """An output of a run (report, trace, checkpoint, results) could not be written: the disk is full, the
    place became read-only. The run stops (exit 1); what was written before stays intact."""


class _Invalid(Protocol):
    def errors(self) -> Iterable[Mapping[str, Any]]: ...


def invalid_settings(what: str, err: _Invalid) -> ConfigError:
    """A ConfigError naming each bad field of a pydantic ``ValidationError`` (``what``: e.g. "Hanoi settings")."""
    problems = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']} (got {e.get('input')!r})" for e in err.errors()
    )
    return ConfigError(f"invalid {what}: {problems}")
